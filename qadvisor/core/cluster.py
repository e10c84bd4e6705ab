"""The same trials on every node of a Ray cluster (`--cluster local|HOST:PORT`). Each trial is a Ray task that runs
the unchanged trial machinery on its node (core.runner.Run: the reference step once per node, cached there, and one
fresh process per trial), pinned to the node and holding all of the node's CPUs, so that only one trial measures on a
node at a time. Ray is imported only here, and only when a run asks for a cluster."""

from __future__ import annotations

import hashlib
import io
import queue
import tarfile
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Iterator

from qadvisor.errors import UserError
from qadvisor.models.events import Error, Event, Progress, Result
from qadvisor.models.hardware import HardwareInfo
from qadvisor.models.result import TrialResult

LOCAL_OBJECT_STORE = 256 << 20  # `--cluster local` ships one small model folder; Ray's default reserves 30 % of RAM
MAX_SHIPPED = 2 << 30  # a larger model folder must already be on every node, at the same path


@dataclass
class Node:
    id: str
    address: str
    cpus: float
    gpus: float
    hardware: HardwareInfo

    @property
    def kind(self) -> str:
        return hardware_kind(self.hardware)

    @property
    def label(self) -> str:
        return f"{self.address} ({self.id[:8]})"


def hardware_kind(hw: HardwareInfo) -> str:
    """Machines that measure alike: same CPU, cores, instruction sets, RAM (to the GiB) and GPUs."""
    gpus = ", ".join(f"{g.name} {round(g.vram_bytes / 2**30)} GiB" for g in hw.gpus) or "no GPU"
    return (f"{hw.cpu_model}, {hw.physical_cores} cores, {', '.join(hw.isa_flags) or 'no SIMD flags'}, "
            f"{round(hw.ram_total_bytes / 2**30)} GiB RAM, {gpus}")


def connect(address: str) -> None:
    """Join the cluster at HOST:PORT, or start one on this machine (`local`). Ray's own lines go to its log files."""
    try:
        import ray
    except ImportError:
        raise UserError("--cluster needs Ray: pip install -e '.[cluster]'") from None
    if ray.is_initialized():
        return
    if address != "local":
        _reachable(address)  # ray.init retries a wrong address for minutes
    import logging
    import os

    logging.getLogger("ray").setLevel(logging.ERROR)  # its start-up notices are not qadvisor's lines; errors still are
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # and its C++ core's warnings
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a cluster qadvisor starts reports nothing outside
    quiet = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if address == "local":
            ray.init(object_store_memory=LOCAL_OBJECT_STORE, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"--cluster {address}: cannot join the Ray cluster ({str(exc).splitlines()[0][:200]}); start "
                        "one with `ray start --head` (README: Beyond one machine)") from None
    _quiet_driver()


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """HOST:PORT of a Ray head that answers, or one UserError line."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--cluster {address}: write local or HOST:PORT (the head's address, e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"--cluster {address}: no Ray head answers there ({exc.strerror or exc}); start one with "
                        "`ray start --head --port PORT` (README: Beyond one machine)") from None


def _quiet_driver() -> None:
    """Ray prints a worker's death to the driver's stdout ("(raylet) A worker died…"), into qadvisor's table; the
    trial's result already says it (with its cause). Ray has no public switch for these lines: its module flag."""
    from ray._private import worker

    if hasattr(worker, "_worker_logs_enabled"):
        worker._worker_logs_enabled = False


def discover() -> list[Node]:
    """Every live node, with its hardware as qadvisor detects it there (a task pinned to each node)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    alive = [n for n in ray.nodes() if n["Alive"]]
    detect_task = _remote(_detect_here)
    refs = [detect_task.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote() for n in alive]
    hardware = ray.get(refs, timeout=300)
    return [Node(n["NodeID"], n["NodeManagerAddress"], n["Resources"].get("CPU", 1.0), n["Resources"].get("GPU", 0.0),
                 hw) for n, hw in zip(alive, hardware)]


def _detect_here() -> HardwareInfo:
    from qadvisor.core.hardware import detect

    return detect()


def pack(model_dir: Path, eval_text: Path, calib_text: Path) -> tuple[str, bytes] | None:
    """The model folder and the two texts as one tar (shipped through Ray's object store to nodes that lack them);
    None when the folder is too large to ship."""
    files = [p for p in sorted(Path(model_dir).iterdir()) if p.is_file()]
    if sum(p.stat().st_size for p in files) > MAX_SHIPPED:
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in files:
            tar.add(path, arcname=f"model/{path.name}")
        tar.add(eval_text, arcname="eval.txt")
        tar.add(calib_text, arcname="calib.txt")
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest()[:16], data


def unpack(payload: tuple[str, bytes]) -> Path:
    """The shipped files in this node's cache (once per content: the folder's name is its hash)."""
    from qadvisor.core.runner import default_cache_dir

    import shutil
    import tempfile

    key, data = payload
    target = default_cache_dir() / "cluster" / key
    if not target.is_dir():  # nodes sharing a cache folder (one machine, a shared home) may unpack at once
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")
        try:
            tmp.rename(target)
        except OSError:  # another node's copy landed first: the same content
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def trial_here(payload, request_json: str, method: str, device: str) -> Iterator[tuple[str, object]]:
    """On a node: one method through the node's own Run (its reference from the node's cache, or computed there
    first). Yields ("event", Event) as they come, then ("reference", Reference) for the export's model line."""
    from qadvisor.core.hardware import detect, resolve_device
    from qadvisor.core.runner import Run, RunRequest

    request = RunRequest.model_validate_json(request_json)
    update: dict = {"methods": [method], "work_dir": None, "cache_dir": None}
    if payload is not None:
        folder = unpack(payload)
        update.update(model_dir=str(folder / "model"), eval_text=folder / "eval.txt", calib_text=folder / "calib.txt")
    hardware = detect(with_backends=False)
    settings = request.settings.model_copy(update={"device": resolve_device(device),
                                                   "threads": request.settings.threads or hardware.physical_cores})
    run = Run(request.model_copy(update={**update, "settings": settings}), hardware)
    for event in run.events():
        yield "event", event
    yield "reference", run.reference


class ClusterRun:
    """A run on every node of a Ray cluster: checked here first (core.runner.Run), then one task per method and node,
    each node's tasks one after another. A trial whose node dies is failed with the cause and tried once more on
    another node of the same kind."""

    def __init__(self, local, address: str, device: str, threads: int | None):
        self.local = local  # the same run on this machine: every check, the recipes, the export's skeleton
        self.device, self.threads = device, threads
        connect(address)
        self.nodes = discover()
        self.results: list[TrialResult] = []
        self.references: dict[str, object] = {}

    @property
    def recipes(self):
        return self.local.recipes

    @property
    def model_dir(self) -> Path:
        return self.local.model_dir

    @property
    def device_label(self) -> str:
        return f"{len(self.nodes)} Ray node(s) of {len(self.kinds())} hardware kind(s)"

    @property
    def reference(self):
        """A node's reference (the model's parameters and bf16 size are the same on every node)."""
        return next(iter(self.references.values()), None)

    def trial_names(self) -> list[str]:
        """What each trial's events and result are called: `METHOD @ NODE`."""
        return [f"{r.name} @ {n.label}" for n in self.nodes for r in self.recipes]

    def export(self):
        """The local run's export with every node's results, and one entry per hardware kind."""
        from qadvisor.models.export import HardwareKind

        self.local.reference, self.local.results = self.reference, list(self.results)
        export = self.local.export()
        export.kinds = [HardwareKind(kind=kind, hardware=nodes[0].hardware, nodes=[n.label for n in nodes])
                        for kind, nodes in self.kinds().items()]
        return export

    def kinds(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for node in self.nodes:
            out.setdefault(node.kind, []).append(node)
        return out

    def events(self, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Every node's events as they come (one thread per node feeds a queue); results tagged with node and kind."""
        cancel = cancel or threading.Event()
        import ray

        payload = pack(self.local.model_dir, self.local.eval_path, self.local.calib_path)
        shipped = ray.put(payload) if payload is not None else None
        request = self.local.request.model_copy(update={"model_dir": str(self.local.model_dir),
                                                        "eval_text": self.local.eval_path,
                                                        "calib_text": self.local.calib_path})
        # 0: each node uses its own physical cores (trial_here)
        request = request.model_copy(update={"settings": request.settings.model_copy(update={"threads": self.threads or 0})})
        out: queue.Queue = queue.Queue()
        workers = [threading.Thread(target=self._node_loop, args=(node, shipped, request.model_dump_json(), out, cancel),
                                    daemon=True) for node in self.nodes]
        for worker in workers:
            worker.start()
        yield from _drain(out, workers)

    def _node_loop(self, node: Node, shipped, request_json: str, out: queue.Queue, cancel: threading.Event) -> None:
        try:
            for recipe in self.local.recipes:
                if cancel.is_set():
                    break
                result, died = self._trial(node, recipe.name, shipped, request_json, out, cancel)
                if died:
                    result = self._retry(node, recipe.name, shipped, request_json, out, cancel) or result
                self.results.append(result)
                out.put(Result(result=result))
        finally:
            out.put(None)  # this node is done

    def _retry(self, failed: Node, method: str, shipped, request_json: str, out, cancel) -> TrialResult | None:
        """Once more on another live node of the same kind, if there is one."""
        other = next((n for n in self.kinds()[failed.kind] if n.id != failed.id and _alive(n.id)), None)
        if other is None or cancel.is_set():
            return None
        out.put(Progress(method=method, step="retry", message=f"{failed.label} failed; again on {other.label}"))
        return self._trial(other, method, shipped, request_json, out, cancel)[0]

    def _trial(self, node: Node, method: str, shipped, request_json: str, out: queue.Queue,
               cancel: threading.Event) -> tuple[TrialResult, bool]:
        """One task pinned to `node`, holding all its CPUs; its events relayed, its result tagged with the node, and
        whether the node (not qadvisor's code on it) failed it."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # all the node's CPUs and GPUs: nothing else runs beside a measurement, and Ray hides the GPUs of a task
        # that asks for none (CUDA_VISIBLE_DEVICES="")
        task = _remote(trial_here).options(
            num_cpus=node.cpus, num_gpus=node.gpus, max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.id, soft=False))
        stream = task.remote(shipped, request_json, method, self.device)
        result, died = None, False
        try:
            for ref in stream:
                if cancel.is_set():
                    ray.cancel(stream)  # raises KeyboardInterrupt in the task: its Run stops the trial's processes
                    break
                kind, item = ray.get(ref)
                if kind == "reference":
                    self.references.setdefault(node.kind, item)
                elif isinstance(item, Result):
                    result = item.result
                else:
                    out.put(item.model_copy(update={"method": f"{item.method} @ {node.label}"}))
        except ray.exceptions.RayError as exc:
            # an exception in qadvisor's own code on the node (RayTaskError) is that trial's failure; anything else
            # (a worker or node that died, an object lost with it) is the node's, and worth another node of its kind
            died = not isinstance(exc, ray.exceptions.RayTaskError)
            lost = "died" if died else "raised"
            cause = f"{type(exc).__name__}: " + str(exc).strip().splitlines()[0][:200]
            out.put(Error(method=f"{method} @ {node.label}", message=f"node {node.label} {lost}: {cause}"))
            result = TrialResult(method=method, backend="", bits=0, status="failed",
                                 reason=f"node {node.label} {lost}: {cause}")
        if result is None:
            result = TrialResult(method=method, backend="", bits=0, status="cancelled", reason="cancelled by the user")
        return result.model_copy(update={"node": node.label, "kind": node.kind}), died


@cache
def _remote(function):
    """One Ray remote function per task kind: each `ray.remote` call registers the function with the cluster anew."""
    import ray

    return ray.remote(function)


def _alive(node_id: str) -> bool:
    import ray

    return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())


def _drain(out: queue.Queue, workers: list[threading.Thread]) -> Iterator[Event]:
    done = 0
    while done < len(workers):
        item = out.get()
        if item is None:
            done += 1
        else:
            yield item
