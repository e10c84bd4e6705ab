"""This machine's earlier decode figures of the same model and method: a trial's speed beside them shows how far it
moves between processes, which the busy-machine checks cannot see (a shared host, a kernel picked differently)."""

from __future__ import annotations

import json
from pathlib import Path

from qadvisor.schemas.jsonfile import write_text_atomic

HISTORY_FILE = "history/decode.json"  # in the cache root; `qadvisor cache --clear history` removes it
KEEP = 5  # figures kept per key, the newest last


def recall_and_add(cache_root: Path, key: str, figure: float, keep: bool = True) -> list[float]:
    """The figures earlier runs here measured for `key` (newest last); `figure` is kept after them where `keep` (a
    figure timed on a busy CPU or a slow machine is compared, never kept: it would drag the median)."""
    path = Path(cache_root) / HISTORY_FILE
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        kept = kept if isinstance(kept, dict) else {}
    except (OSError, ValueError):
        kept = {}  # none yet, or unreadable: this run starts it again
    earlier = [float(x) for x in kept.get(key, []) if isinstance(x, (int, float))][-KEEP:]
    if not keep:
        return earlier
    kept[key] = [*earlier, figure][-KEEP:]
    try:
        write_text_atomic(path, json.dumps(kept, indent=1))
    except OSError:
        pass  # a read-only cache keeps no history; the figure itself stands
    return earlier
