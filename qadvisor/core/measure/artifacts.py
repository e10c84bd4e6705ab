"""Quantized models kept between runs: quantizing is the slow step and its output does not change while its inputs
do not. Each entry is keyed by everything that decides the quantized files (the model's content, the method's spec,
the backend's and the frameworks' versions, the calibration text, where it was quantized); a change in any of them
is another key, so an entry is never reused across one. Speed and accuracy are measured again in every run."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, ValidationError

from qadvisor import __version__
from qadvisor.core.paths import default_cache_dir
from qadvisor.errors import UserError
from qadvisor.format import GIB
from qadvisor.schemas.jsonfile import check_output_dir

META_FILE = "artifact.json"
MODEL_FOLDER = "model"
# Models larger than this are not kept: slices of a 72B model are several GiB a method, and a cache the user never
# asked for must not fill the disk. `synthetic:Qwen2.5-0.5B` and the bundled model fit.
MAX_MODEL_BYTES = 2 * GIB
# The quantized models kept in all: beyond it the least recently used go (a cache the user never asked for must not
# grow without end: twelve methods of the bundled model are ~0.2 GiB, of synthetic:Qwen2.5-0.5B a few GiB).
DEFAULT_MAX_GB = 8.0
MAX_GB_ENV = "QADVISOR_CACHE_MAX_GB"
# Files of a model folder that are not the model: they have their own place in the key (calibration) or none.
NOT_MODEL = ("heldout.txt", "calib.txt", "README.md", "training_stats.json")


class ArtifactMeta(BaseModel):
    key: str
    method: str
    made_at: str
    quantize_s: float  # how long quantizing took when the entry was made
    inputs: dict[str, str]  # what the key is made of, for a person reading the cache
    files: dict[str, int]  # path inside the entry's model folder → bytes: a cut-short copy is not an entry


def model_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).iterdir() if p.is_file())


def content_hash(model_dir: Path) -> str:
    """sha256 of every file of the model folder (weights, config, tokenizer), names included."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.name not in NOT_MODEL):
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def versions(packages: tuple[str, ...]) -> str:
    found = []
    for name in ("torch", "transformers", *filter(None, packages)):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} none")
    return ", ".join(found)


def key_of(inputs: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]


def key_inputs(model_hash: str, spec_json: str, packages: tuple[str, ...], calib_text: str, device: str,
               calibrate: bool, fast_bf16: bool) -> dict[str, str]:
    return {"model": model_hash, "spec": spec_json, "versions": versions(packages), "qadvisor": __version__,
            "calibration": hashlib.sha256(calib_text.encode()).hexdigest() if calibrate else "none",
            "device": device, "work_dtype": "bf16" if fast_bf16 or device != "cpu" else "fp32"}


def lookup(entry: Path) -> ArtifactMeta | None:
    """The entry's record when the entry is whole (every file there at its recorded size), else None."""
    try:
        meta = ArtifactMeta.model_validate_json((entry / META_FILE).read_text())
    except (OSError, ValidationError):
        return None
    folder = entry / MODEL_FOLDER
    for name, size in meta.files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return meta if meta.key == entry.name else None


def store(entry: Path, saved: Path, method: str, quantize_s: float, inputs: dict[str, str]) -> None:
    """Copy the saved model into the cache under its key: written beside, then renamed into place, so a run that
    stops half-way leaves no entry that looks whole."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".{entry.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(saved, tmp / MODEL_FOLDER)
    files = {str(p.relative_to(tmp / MODEL_FOLDER)): p.stat().st_size for p in (tmp / MODEL_FOLDER).rglob("*")
             if p.is_file()}
    meta = ArtifactMeta(key=entry.name, method=method, quantize_s=quantize_s, inputs=inputs, files=files,
                        made_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    (tmp / META_FILE).write_text(meta.model_dump_json(indent=1))
    shutil.rmtree(entry, ignore_errors=True)  # a stale or refreshed entry (--no-cache)
    try:
        os.rename(tmp, entry)
    except OSError:  # another run stored the same key just now: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)


def mark_used(entry: Path) -> None:
    """An entry a trial has just used is the last the cap removes."""
    try:
        os.utime(entry / META_FILE)
    except OSError:
        pass


def max_bytes() -> int:
    """The cap on the quantized models kept: $QADVISOR_CACHE_MAX_GB (GiB), else DEFAULT_MAX_GB (check_environment
    refuses a value that is not a number of at least 0 before anything runs)."""
    try:
        return int(max(0.0, float(os.environ.get(MAX_GB_ENV) or DEFAULT_MAX_GB)) * GIB)
    except ValueError:
        return int(DEFAULT_MAX_GB * GIB)


def check_environment() -> None:
    """The cache's environment variables, checked before any command runs: one UserError line naming the variable."""
    raw = os.environ.get(MAX_GB_ENV)
    if raw:
        try:
            ok = float(raw) >= 0
        except ValueError:
            ok = False
        if not ok:
            raise UserError(f"${MAX_GB_ENV}={raw!r}: give the GiB of quantized models to keep, a number of at least 0")
    check_output_dir(default_cache_dir(), "qadvisor's cache ($QADVISOR_CACHE)")


def prune(folder: Path, keep: str, limit: int | None = None) -> list[str]:
    """Remove the least recently used entries until the kept models fit under `limit` (max_bytes()); never `keep`,
    the entry just stored. Returns the keys removed."""
    limit = max_bytes() if limit is None else limit
    entries = [p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")]
    sizes = {p: folder_bytes(p) for p in entries}
    total = sum(sizes.values())
    removed = []
    for entry in sorted(entries, key=_last_used):
        if total <= limit:
            break
        if entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)
            total -= sizes[entry]
            removed.append(entry.name)
    return removed


def _last_used(entry: Path) -> float:
    try:
        return (entry / META_FILE).stat().st_mtime
    except OSError:
        return 0.0  # no record: not a whole entry, the first to go


CACHE_PARTS = {"artifacts": "quantized models", "reference": "reference log-probs",
               "synthetic": "random-weight models and slices", "probes": "what a backend probed of this machine",
               "checkpoints": "config and tokenizer of checkpoints measured without a reference",
               "gguf-references": "model folders written from unquantized GGUF references",
               "runs": "runs the TUI saved on its own", "logs": "the trial processes' logs of recent runs",
               "history": "earlier runs' decode figures, per model and method (how far a speed moves here)"}
# what `--clear all` removes: saved runs and the decode history are results, and the logs explain them: all kept
RECOMPUTED = ("artifacts", "reference", "synthetic", "probes", "checkpoints", "gguf-references")
KEEP_LOG_RUNS = 20  # the runs whose logs are kept; older ones go when a run starts


def new_log_dir(root: Path) -> Path:
    """A folder for one run's trial logs, under the cache's `logs` (the oldest beyond KEEP_LOG_RUNS removed)."""
    folder = Path(root).resolve() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    runs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[: max(0, len(runs) - KEEP_LOG_RUNS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run = folder / f"{stamp}-{os.getpid()}"
    run.mkdir(exist_ok=True)
    return run


def folder_bytes(folder: Path) -> int:
    """Bytes on disk: a file hard-linked twice (a shallow slice shares the deep one's shards) counts once."""
    seen = {}
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def cache_summary(root: Path) -> list[tuple[str, str, int, int]]:
    """(part, what it holds, entries, bytes) for each part of the cache folder."""
    rows = []
    for part, what in CACHE_PARTS.items():
        folder = Path(root) / part
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
        rows.append((part, what, len(entries), folder_bytes(folder) if folder.is_dir() else 0))
    return rows


def clear(root: Path, part: str) -> int:
    """Remove one part of the cache (`all`: every part that is recomputed when a run needs it again, not the saved
    runs); returns the bytes freed."""
    parts = list(RECOMPUTED) if part == "all" else [part]
    freed = 0
    for name in parts:
        folder = Path(root) / name
        if folder.is_dir():
            freed += folder_bytes(folder)
            shutil.rmtree(folder)
    return freed
