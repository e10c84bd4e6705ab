"""The same trials on every node of a Ray cluster (`--cluster local|HOST:PORT`) that can run them (a CUDA method where
there is a GPU, a `--pin`ned one where its resource is). Each trial is a Ray task that runs the unchanged trial
machinery on its node (core.cluster.node: the node's own Run, one fresh process per trial), pinned to the node and
holding all of its CPUs and GPUs, so that only one trial measures on a node at a time. The reference step runs once
per hardware kind and each quantized model is made once per cache key, then sent through Ray's object store to
the nodes that need it. Ray is imported only here, and only when a run asks for a cluster."""

from __future__ import annotations

import queue
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Callable, Iterator

from qadvisor.core.cluster.node import keys_here, pack, reference_here, trial_here
from qadvisor.core.cluster.share import Shared, shared_keys
from qadvisor.core.hardware import detect, hardware_kind
from qadvisor.errors import UserError
from qadvisor.quantizers import registry
from qadvisor.schemas.events import Error, Event, Progress, Result
from qadvisor.schemas.export import HardwareKind
from qadvisor.schemas.hardware import HardwareInfo
from qadvisor.schemas.result import TrialResult

LOCAL_OBJECT_STORE = 256 << 20  # `--cluster local` ships one small model folder; Ray's default reserves 30 % of RAM


@dataclass
class Node:
    id: str
    address: str
    hardware: HardwareInfo
    resources: dict[str, float]  # Ray's view of the node, custom resources (`ray start --resources`) included

    @property
    def cpus(self) -> float:
        return self.resources.get("CPU", 1.0)

    @property
    def gpus(self) -> float:
        return self.resources.get("GPU", 0.0)

    @property
    def kind(self) -> str:
        return hardware_kind(self.hardware)

    @property
    def label(self) -> str:
        return f"{self.address} ({self.id[:8]})"


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
        with _stderr_with_a_descriptor():
            if address == "local":
                ray.init(object_store_memory=LOCAL_OBJECT_STORE, **quiet)
            else:
                ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"--cluster {address}: cannot join the Ray cluster ({str(exc).splitlines()[0][:200]}); start "
                        "one with `ray start --head` (docs/cluster.md)") from None
    _quiet_driver()


@contextmanager
def _stderr_with_a_descriptor():
    """ray.init enables faulthandler on sys.stderr, which the TUI replaces with an object that has no file
    descriptor ("file.fileno() is not a valid file descriptor"); the process's own stderr serves meanwhile."""
    saved = sys.stderr
    try:
        usable = saved.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        usable = False
    if not usable and sys.__stderr__ is not None:
        sys.stderr = sys.__stderr__
    try:
        yield
    finally:
        sys.stderr = saved


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
                        "`ray start --head --port PORT` (docs/cluster.md)") from None


def _quiet_driver() -> None:
    """Ray prints a worker's death to the driver's stdout ("(raylet) A worker died…"), into qadvisor's table; the
    trial's result already says it (with its cause). Ray has no public switch for these lines: its module flag."""
    from ray._private import worker

    if hasattr(worker, "_worker_logs_enabled"):
        worker._worker_logs_enabled = False


def discover() -> list[Node]:
    """Every live node, with its hardware as qadvisor detects it there (a task pinned to each node)."""
    import ray

    alive = [n for n in ray.nodes() if n["Alive"]]
    hardware = ray.get([_pinned(_detect_here, n["NodeID"]).remote() for n in alive], timeout=300)
    return [Node(n["NodeID"], n["NodeManagerAddress"], hw, dict(n["Resources"])) for n, hw in zip(alive, hardware)]


def _pinned(function, node_id: str, cpus: float = 0, gpus: float = 0):
    """`function` as a Ray task that runs on that node only, holding `cpus` and `gpus` of it while it runs."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return _remote(function).options(num_cpus=cpus, num_gpus=gpus, max_retries=0,
                                     scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))


def _detect_here() -> HardwareInfo:
    return detect()


@dataclass(frozen=True)
class KindStep:
    """Work done once per hardware kind, on the kind's first node after its trials: `function(payload, request_json,
    device, *args)` streams events and a ("value", x) that lands in `ClusterRun.kind_values` (app.plan.plan_here)."""

    function: Callable
    args: tuple = ()


@dataclass(frozen=True)
class ClusterRequest:
    """What a cluster run adds to the local run it spreads: the cluster's address, each node's device and threads,
    the methods pinned to a custom resource, and what runs once per hardware kind."""

    address: str
    device: str = "auto"
    threads: int | None = None
    pins: dict[str, str] = field(default_factory=dict)
    per_kind: KindStep | None = None


class ClusterRun:
    """A run on every node of a Ray cluster: checked here first (core.measure.runner.Run), then one task per method and node
    that can run it, each node's tasks one after another. A trial whose node dies is failed with the cause and tried
    once more on another node of the same kind."""

    def __init__(self, local, request: ClusterRequest):
        self.local = local  # the same run on this machine: every check, the recipes, the export's skeleton
        self.device, self.threads = request.device, request.threads
        self.per_kind, self.kind_values = request.per_kind, {}
        connect(request.address)
        self.nodes = discover()
        self.pins = _checked_pins(request.pins, [r.name for r in local.recipes], self.nodes)
        self.results: list[TrialResult] = []
        self.references: dict[str, object] = {}
        self.shared = Shared()

    @property
    def recipes(self):
        return self.local.recipes

    @property
    def model_path(self) -> Path:
        return self.local.model_path

    @property
    def device_label(self) -> str:
        return f"{len(self.nodes)} Ray node(s) of {len(self.kinds())} hardware kind(s)"

    @property
    def reference(self):
        """A node's reference (the model's parameters and bf16 size are the same on every node)."""
        return next(iter(self.references.values()), None)

    def recipe(self, method: str):
        return next(r for r in self.recipes if r.name == method)

    def runs_on(self, node: Node, recipe) -> bool:
        """A pinned method on the nodes with its resource; a CUDA method where there is a GPU; the rest everywhere."""
        if recipe.name in self.pins:
            return node.resources.get(self.pins[recipe.name], 0) > 0
        cuda_only = not registry.recipe_available(recipe, False)[0] and registry.recipe_available(recipe, True)[0]
        return node.gpus > 0 or not cuda_only

    def trial_names(self) -> list[str]:
        """What each trial's events and result are called: `METHOD @ NODE`, or METHOD alone when no node can run it."""
        names = [f"{r.name} @ {n.label}" for n in self.nodes for r in self.recipes if self.runs_on(n, r)]
        return names + [r.name for r in self._nowhere()]

    def _nowhere(self) -> list:
        return [r for r in self.recipes if not any(self.runs_on(n, r) for n in self.nodes)]

    def export(self):
        """The local run's export with every node's results, and one entry per hardware kind."""
        self.local.reference, self.local.results = self.reference, list(self.results)
        export = self.local.export()
        export.kinds = [HardwareKind(kind=kind, hardware=nodes[0].hardware, nodes=[n.label for n in nodes],
                                     reference_node=self.shared.reference_nodes.get(kind),
                                     plan=self.kind_values.get(kind))
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
        for recipe in self._nowhere():
            why = f"resource {self.pins[recipe.name]}" if recipe.name in self.pins else "a GPU"
            result = _unmeasured(recipe, "failed", f"no node of the cluster has {why}")
            self.results.append(result)
            yield Result(result=result)
        task = NodeTask(self, cancel)
        out: queue.Queue = queue.Queue()
        workers = [threading.Thread(target=self._node_loop, args=(node, task, out), daemon=True) for node in self.nodes]
        for worker in workers:
            worker.start()
        yield from _drain(out, workers)

    def _node_loop(self, node: Node, task: "NodeTask", out: queue.Queue) -> None:
        try:
            reference = self.shared.reference(node.kind, node.label, lambda: task.reference(node, out))
            methods = [r.name for r in self.recipes if self.runs_on(node, r)]
            keys = task.keys.get(node.id, {})
            while methods and not task.cancel.is_set():
                method, part = self.shared.next(keys, methods, task.cancel)
                methods.remove(method)
                key = keys.get(method, ("", True))[0]
                offered = self.shared.models.get(key) if part == "take" else None
                made = None
                try:
                    result, died, made = task.trial(node, method, out, reference, offered, share=part == "make")
                    if died:
                        result = self._retry(node, method, task, out, reference) or result
                finally:
                    if part == "make":
                        self.shared.made(key, made)
                self.results.append(result)
                out.put(Result(result=result))
            if self.per_kind is not None and not task.cancel.is_set() and node is self.kinds()[node.kind][0]:
                self.kind_values[node.kind] = task.kind_value(node, out, self.per_kind.function, *self.per_kind.args)
        finally:
            out.put(None)  # this node is done

    def _retry(self, failed: Node, method: str, task: "NodeTask", out, reference) -> TrialResult | None:
        """Once more on another live node of the same kind, if there is one."""
        other = next((n for n in self.kinds()[failed.kind] if n.id != failed.id and _alive(n.id)), None)
        if other is None or task.cancel.is_set():
            return None
        out.put(Progress(method=method, step="retry", message=f"{failed.label} failed; again on {other.label}"))
        return task.trial(other, method, out, reference)[0]


class NodeTask:
    """The Ray tasks of one cluster run, each pinned to a node: the reference of a kind, the cache keys, a trial."""

    def __init__(self, cluster: ClusterRun, cancel: threading.Event):
        import ray

        local = cluster.local
        self.cluster, self.cancel = cluster, cancel
        payload = pack(local.model_dir, local.eval_path, local.calib_path)
        self.payload = ray.put(payload) if payload is not None else None
        keep = local.request.work_dir
        request = local.request.model_copy(update={"model_dir": str(local.model_dir), "eval_text": local.eval_path,
                                                   "calib_text": local.calib_path,
                                                   "work_dir": Path(keep).resolve() if keep else None})
        # 0: each node uses its own physical cores (cluster_node.node_run)
        settings = request.settings.model_copy(update={"threads": cluster.threads or 0})
        self.request_json = request.model_copy(update={"settings": settings}).model_dump_json()
        self.keys = shared_keys(self._keys())

    def _keys(self) -> dict[str, dict[str, tuple[str, bool]]]:
        """node → method → (its quantized model's cache key there, whether that node's cache holds it)."""
        import ray

        refs = {node.id: self._on(node, keys_here, whole_node=False) for node in self.cluster.nodes}
        keys = {}
        for node_id, ref in refs.items():
            try:
                keys[node_id] = ray.get(ref, timeout=600)
            except ray.exceptions.RayError:  # that node quantizes everything itself
                keys[node_id] = {}
        return keys

    def _on(self, node: Node, function, *args, whole_node: bool = True):
        """`function(payload, request, device, *args)` as a task pinned to `node`; by default it holds all the node's
        CPUs and GPUs: nothing else runs beside a measurement, and Ray hides the GPUs of a task that asks for none."""
        task = _pinned(function, node.id, node.cpus, node.gpus) if whole_node else _pinned(function, node.id)
        return task.remote(self.payload, self.request_json, self.cluster.device, *args)

    def reference(self, node: Node, out: queue.Queue):
        """The reference step of `node`'s hardware kind, on `node`; None when it failed there (each node of the kind
        then computes its own)."""
        import ray

        out.put(Progress(method="reference", step="evaluate", message=f"on {node.label} for its hardware kind"))
        ref = self._on(node, reference_here)
        try:
            while not ray.wait([ref], timeout=1.0)[0]:
                if self.cancel.is_set():
                    ray.cancel(ref)
                    return None
            ray.get(ref)
            return ref
        except ray.exceptions.RayError as exc:
            out.put(Progress(method="reference", step="evaluate",
                             message=f"on {node.label} failed ({type(exc).__name__}); each node computes its own"))
            return None

    def trial(self, node: Node, method: str, out: queue.Queue, reference=None, artifact=None,
              share: bool = False) -> tuple[TrialResult, bool, object]:
        """One trial on `node`: its events relayed, its result tagged with the node, whether the node (not qadvisor's
        code on it) failed it, and the ref of the quantized model it made when asked to share it."""
        # the args after the request: Ray hands a task the object behind a ref (the reference's and model's files)
        items, error, died = self.stream(node, out, trial_here, method, reference, artifact, share)
        if "reference" in items:
            self.cluster.references.setdefault(node.kind, items["reference"])
        result = items.get("result")
        if error is not None:
            out.put(Error(method=f"{method} @ {node.label}", message=error, node=node.label))
            result = _unmeasured(self.cluster.recipe(method), "failed", error)
        elif result is None:
            result = _unmeasured(self.cluster.recipe(method), "cancelled", "cancelled by the user")
        return result.model_copy(update={"node": node.label, "kind": node.kind}), died, items.get("artifact")

    def kind_value(self, node: Node, out: queue.Queue, function, *args):
        """The per-kind task on `node`: its events relayed (results too, named with the node), its value."""
        items, error, _ = self.stream(node, out, function, *args, results_are_events=True)
        if error is not None:
            out.put(Error(method=f"{function.__name__} @ {node.label}", message=error, node=node.label))
        return items.get("value")

    def stream(self, node: Node, out: queue.Queue, function, *args,
               results_are_events: bool = False) -> tuple[dict, str | None, bool]:
        """A streaming task on `node`: its ("event", e) items relayed (named with the node), the others kept by kind
        (a trial's Result under "result"; a sent model's item as its ref, which the driver owns so it outlives the
        task); the error line when it failed, and whether the node (not qadvisor's code on it) failed it."""
        import ray

        stream, items = self._on(node, function, *args), {}
        try:
            for ref in stream:
                if self.cancel.is_set():
                    ray.cancel(stream)  # raises KeyboardInterrupt in the task: its Run stops the trial's processes
                    break
                kind, item = ray.get(ref)
                if kind != "event":
                    items[kind] = ref if kind == "artifact" else item
                elif isinstance(item, Result) and not results_are_events:
                    items["result"] = item.result
                else:
                    out.put(_named(item, node))
        except ray.exceptions.RayError as exc:
            # an exception in qadvisor's own code on the node (RayTaskError) is that task's failure; anything else
            # (a worker or node that died, an object lost with it) is the node's, and worth another node of its kind
            died = not isinstance(exc, ray.exceptions.RayTaskError)
            return items, f"node {node.label} {'died' if died else 'raised'}: {_cause(exc)}", died
        return items, None, False


def _unmeasured(recipe, status: str, reason: str) -> TrialResult:
    """The result of a method that has no measurement, with its backend and bits as a local run's has."""
    return TrialResult(method=recipe.name, backend=recipe.weights.backend, bits=recipe.weights.bits, status=status,
                       reason=reason)


def _named(event: Event, node: Node) -> Event:
    """An event from a node: its `node` set, and its method written `METHOD @ NODE` for the eye."""
    if isinstance(event, Result):
        return event.model_copy(update={"node": node.label, "result": event.result.model_copy(
            update={"method": f"{event.result.method} @ {node.label}"})})
    return event.model_copy(update={"method": f"{event.method} @ {node.label}", "node": node.label})


def _cause(exc) -> str:
    """One line for a Ray error: the exception qadvisor's code raised on the node, or Ray's own (a death)."""
    inner = getattr(exc, "cause", None)
    err = inner if isinstance(inner, Exception) else exc
    return f"{type(err).__name__}: " + (str(err).strip().splitlines() or [""])[0][:200]


def _checked_pins(pins: dict[str, str], methods: list[str], nodes: list[Node]) -> dict[str, str]:
    """--pin METHOD=RESOURCE: the method is in the run and some node has the resource (`ray start --resources`)."""
    for method, resource in pins.items():
        if method not in methods:
            raise UserError(f"--pin {method}={resource}: {method} is not among the run's methods")
        if not any(n.resources.get(resource, 0) > 0 for n in nodes):
            have = sorted({r for n in nodes for r in n.resources if not r.startswith("node:")})
            raise UserError(f"--pin {method}={resource}: no node of the cluster has resource {resource} (they have: "
                            f"{', '.join(have)}); start a node with ray start --resources '{{\"{resource}\": 1}}'")
    return pins


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
