"""The application layer: typed options in, results out. The CLI and the TUI turn their input into these
options and render what comes back; every decision about a run lives here or below, never in a face."""
