"""The measuring core: no Textual here, so the CLI and the TUI share it."""
