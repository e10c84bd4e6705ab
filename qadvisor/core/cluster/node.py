"""What runs on a node of a Ray cluster (core.cluster.driver sends it there): the sent model folder unpacked once, the
node's own Run for one method, and what nodes hand each other through Ray's object store: the reference of a
hardware kind (computed on one node of the kind) and a quantized model (made on one node of those whose cache key
matches). Everything crosses as one tar of files."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from qadvisor.core.hardware import detect, where_to_run
from qadvisor.core.measure import artifacts
from qadvisor.core.measure.runner import Run, RunRequest
from qadvisor.core.paths import default_cache_dir
from qadvisor.schemas.events import Error, Progress

MAX_SENT = 2 << 30  # a larger model folder must already be on every node, at the same path


def pack_files(files: dict[str, Path]) -> bytes:
    """name in the tar → file, as one tar in memory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in files.items():
            tar.add(path, arcname=name)
    return buffer.getvalue()


def folder_files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def unpack_to(data: bytes, target: Path) -> Path:
    """The tar's files as `target`, written beside and renamed into place (nodes sharing a cache folder, as on one
    machine or a shared home, may unpack the same thing at once: the first copy stays)."""
    if target.is_dir():
        return target
    tmp = _extracted_beside(data, target)
    try:
        tmp.rename(target)
    except OSError:  # another node's copy landed first: the same content
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class Payload:
    """The model folder and the two texts as one tar, sent to every node."""

    key: str  # the tar's hash: the folder it is unpacked to on a node
    data: bytes
    model_hash: str  # the model's content hash (core.measure.artifacts), hashed once here rather than per trial per node


def pack(model_dir: Path, eval_text: Path, calib_text: Path) -> Payload | None:
    """The model folder and the two texts (sent to nodes that lack them); None when the folder is too large."""
    files = {f"model/{p.name}": p for p in sorted(Path(model_dir).iterdir()) if p.is_file()}
    if sum(p.stat().st_size for p in files.values()) > MAX_SENT:
        return None
    data = pack_files({**files, "eval.txt": eval_text, "calib.txt": calib_text})
    return Payload(hashlib.sha256(data).hexdigest()[:16], data, artifacts.content_hash(model_dir))


def node_run(payload: Payload | None, request_json: str, methods: list[str] | None, device: str):
    """This node's Run of `methods` (default: the request's): the sent files from this node's cache, this node's
    hardware, device and cores."""
    request = RunRequest.model_validate_json(request_json)
    # --keep-models DIR: this node's models in DIR/NODE on its own disk (nodes sharing a disk do not collide)
    keep = Path(request.work_dir) / _node_id()[:8] if request.work_dir else None
    update: dict = {"methods": methods or request.methods, "work_dir": keep, "cache_dir": None}
    if payload is not None:
        folder = unpack_to(payload.data, default_cache_dir() / "cluster" / payload.key)  # once per content
        update.update(model_dir=str(folder / "model"), eval_text=folder / "eval.txt", calib_text=folder / "calib.txt")
    hardware = detect(with_backends=False)
    device, threads = where_to_run(device, request.settings.threads, hardware)
    settings = request.settings.model_copy(update={"device": device, "threads": threads})
    run = Run(request.model_copy(update={**update, "settings": settings}), hardware)
    if payload is not None:
        run.model_hash = payload.model_hash  # the same files as the driver's
    return run


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def reference_here(payload, request_json: str, device: str) -> bytes:
    """The reference step on this node, for every node of its hardware kind: its files as one tar."""
    run = node_run(payload, request_json, None, device)
    for event in run.reference_events():
        if isinstance(event, Error):
            raise RuntimeError(event.message)
    return pack_files(folder_files(run.cache_dir))


def keys_here(payload, request_json: str, device: str) -> dict[str, tuple[str, bool]]:
    """method → (the cache key of its quantized model on this node, whether this node's cache holds it). Empty with
    --no-cache (every node quantizes anew) or when models this large are not kept."""
    run = node_run(payload, request_json, None, device)
    if not run.request.reuse_cache:
        return {}
    keys = {}
    for recipe in run.recipes:
        entry = run.artifact_entry(recipe.weights)
        if entry is not None:
            keys[recipe.name] = (entry.name, artifacts.lookup(entry) is not None)
    return keys


def trial_here(payload, request_json: str, device: str, method: str, reference: bytes | None = None,
               artifact: tuple | None = None, share: bool = False) -> Iterator[tuple[str, object]]:
    """On a node: one method through the node's own Run. `reference`: the kind's reference files (else the node's
    cache, or computed here first); `artifact`: the quantized model another node made under this node's key; `share`:
    send the quantized model made here back for the others. Yields ("event", Event) as they come, ("reference",
    Reference) for the export's model line, then ("artifact", tar) when asked to share."""
    run = node_run(payload, request_json, [method], device)
    if reference is not None:
        _install(reference, run.cache_dir)
        run.reference_given = True
    entry = run.artifact_entry(run.recipes[0].weights)
    if artifact is not None and entry is not None and artifacts.lookup(entry) is None:
        shutil.rmtree(entry, ignore_errors=True)  # a cut-short copy
        unpack_to(artifact[1], entry)
        artifacts.prune(entry.parent, keep=entry.name)  # the cache's cap holds for sent models too
        yield "event", Progress(method=method, step="quantize", message="quantized model from another node")
    for event in run.events():
        yield "event", event
    yield "reference", run.reference
    if share and entry is not None and artifacts.lookup(entry) is not None \
            and artifacts.folder_bytes(entry) <= MAX_SENT:
        yield "artifact", pack_files(folder_files(entry))


def _install(data: bytes, folder: Path) -> None:
    """The sent files into `folder`, each replacing its old copy in one rename."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _extracted_beside(data, folder)
    try:
        for name, path in folder_files(tmp).items():
            os.replace(path, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extracted_beside(data: bytes, target: Path) -> Path:
    """The tar's files in a new hidden folder beside `target` (same file system: each can then move in one rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    return tmp
