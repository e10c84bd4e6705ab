"""Pydantic data shared by the core, the CLI and the TUI."""
