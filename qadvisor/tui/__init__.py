"""The Textual face: renders the core's events; owns no measuring or advising logic."""
