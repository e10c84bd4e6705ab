"""Measuring: trial processes, the runner, metrics, the cache, streamed accuracy."""
