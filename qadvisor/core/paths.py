"""Where qadvisor keeps what outlives a run: the cache root and the probes each backend made of this machine."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$QADVISOR_CACHE when set (an empty value counts as unset), else ~/.cache/qadvisor."""
    return Path(os.environ.get("QADVISOR_CACHE") or Path.home() / ".cache" / "qadvisor")


def probe_dir(root: Path) -> Path:
    """Where backends keep what they probed of this machine once (TrialContext.probe_dir)."""
    return Path(root).resolve() / "probes"
