"""`qadvisor plan --measure`: time each method on slices of the planned model (a few decoder layers at its real shape)
with the real backend, and project the whole model. The whole planned model is never built.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import psutil

from qadvisor.core import architectures, pace, paths
from qadvisor.core.measure import synthetic
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.modelio import bundled_model_dir
from qadvisor.core.measure.runner import Run, RunRequest, time_side_by_side
from qadvisor.core.measure.worker import SPEED_FIELDS, TIMING_BUDGET_S
from qadvisor.core.plan import planner
from qadvisor.core.plan.bandwidth import probe_disk_read_gb_s
from qadvisor.core.plan.projection import project
from qadvisor.errors import UserError
from qadvisor.format import GIB, MIB
from qadvisor.quantizers import gguf_mix, registry
from qadvisor.quantizers.base import torch_linear_attention_note
from qadvisor.schemas.architecture import Architecture
from qadvisor.schemas.events import Event, Progress, Result
from qadvisor.schemas.hardware import HardwareInfo
from qadvisor.schemas.plan import Plan, Projection
from qadvisor.schemas.result import TrialResult

MEASURE_DEFAULT = ("bnb-nf4", "gguf-q8_0", "gguf-q4_k_m")
# Both depths are timed side by side in one process (metrics.side_by_side): each generation decodes as many
# tokens as the slower model does in DECODE_BUDGET_S, at least 4 and at most DECODE_TOKENS.
DECODE_TOKENS = 64
DECODE_BUDGET_S = TIMING_BUDGET_S
REPEATS = 3  # rounds after the warm-up
DEEP_SLICE_LAYER_PARAMS = 2.0e9  # decoder-layer parameters in the deeper slice: a 72B trial stays within minutes
RESERVE = 2 * GIB  # runtime, tokenizer, a quantizer's working buffers
MAX_PROMPT = 2048  # the evaluation text the prompt is cut from has about this many tokens


def slice_architecture(arch: Architecture, layers: int) -> Architecture:
    """`layers` decoder layers of `arch`. The slice ties lm_head to the embedding: a lookup reads one row of the
    table, so per token only lm_head is read either way, and tying halves the slice's memory."""
    return arch.model_copy(update={"name": f"{arch.name}-{layers}L", "num_hidden_layers": layers,
                                   "tie_word_embeddings": True})


def routing_note(arch: Architecture, prompt_tokens: int) -> str:
    """What the slices' router did, for an MoE: random weights route each token about uniformly, so a decoded token
    reads its top-k experts and a prompt touches nearly every expert; a trained router may concentrate them."""
    if not arch.is_moe:
        return ""
    e, k = arch.num_experts, arch.num_experts_per_tok
    touched = e * (1 - (1 - k / e) ** prompt_tokens)
    return (f"MoE routing assumed uniform (random weights' router): a decoded token reads {k} of {e} experts a layer, "
            f"a {prompt_tokens}-token prompt touches about {touched:.0f} of them")


def need_bytes(arch: Architecture) -> int:
    """Peak memory of a trial on this slice: every weight at 4 bytes (the CPU computes in fp32) plus a reserve."""
    return 4 * architectures.param_count(arch) + RESERVE


def slice_depths(arch: Architecture, available: int) -> tuple[int, int]:
    """Two depths as deep as time and memory allow (half the model at most), the shallow one half the deep one; a
    hybrid model's in whole periods of its layer pattern (three linear-attention layers and a full one), so both
    slices hold its layer types in the model's own proportion.

    Shallow slices mislead: a layer or two of a small model sit in the CPU's last-level cache, while the whole
    model streams from memory (measured: 1- and 6-layer slices of the 0.5B projected Q4_K_M decode 25 % too fast).
    Deeper slices run as the model does, and the projection's lever (target − shallow) ÷ (deep − shallow) stays
    small (the 72B's 1 and 2 layers are each far larger than any cache)."""
    unit = arch.full_attention_interval
    if arch.num_hidden_layers < 3 * unit:
        raise UserError(f"{arch.name} has {arch.num_hidden_layers} layers: too shallow to slice; measure it whole "
                        "with `qadvisor --auto --model …`")
    per_unit = architectures.param_count(slice_architecture(arch, unit)) - architectures.param_count(slice_architecture(arch, 0))
    deep = max(2, min(arch.num_hidden_layers // (2 * unit), int(DEEP_SLICE_LAYER_PARAMS // per_unit)))
    while deep > 2 and need_bytes(slice_architecture(arch, deep * unit)) > available:
        deep -= 1
    need = need_bytes(slice_architecture(arch, deep * unit))
    if need > available:
        raise UserError(f"a {deep * unit}-layer slice of {arch.name} needs about {need / GIB:.1f} GiB; "
                        f"{available / GIB:.1f} GiB is available here")
    return max(1, deep // 2) * unit, deep * unit


def slice_dir(cache_root: Path, model: str, layers: int) -> Path:
    """In the cache's `synthetic` part, which `qadvisor cache` lists and clears; a slice that an older qadvisor kept
    in a `slices` folder of its own (out of the listing's sight) is moved there."""
    name = f"{model}-{layers}L"
    target, legacy = Path(cache_root) / "synthetic" / name, Path(cache_root) / "slices" / name
    if legacy.is_dir() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        legacy.rename(target)
        if not any(legacy.parent.iterdir()):
            legacy.parent.rmdir()
    return target


def why_not_sliceable(recipe) -> str:
    """Why slices cannot time this recipe ('' when they can)."""
    spec = recipe.weights  # a KV stack's weights are timed: its cache is sized for the plan's context
    if planner.format_for(spec.name) is None:
        return f"{spec.name}: the planner has no entry for it, so there is nothing to project onto"
    return ""


def sliceable(name: str) -> bool:
    return not why_not_sliceable(registry.parse_methods(name)[0])


def check_sliceable(names: list[str]) -> None:
    """Methods the planner knows (KV stacks by their weights); anything else is one UserError."""
    for recipe in registry.parse_methods(",".join(names)):
        why = why_not_sliceable(recipe)
        if why:
            raise UserError(why)


def check_methods(names: list[str], has_cuda: bool) -> list[str]:
    """Weight methods that run here and that the planner knows; anything else is one UserError."""
    check_sliceable(names)
    for recipe in registry.parse_methods(",".join(names)):
        ok, reason = registry.recipe_available(recipe, has_cuda)
        if not ok:
            raise UserError(f"{recipe.name} cannot run here: {reason}")
    return names


class SliceMeasurement:
    """Checked on creation (bad input raises UserError before anything is built); `events()` measures."""

    def __init__(self, arch: Architecture, methods: list[str], hardware: HardwareInfo, settings: EvalSettings,
                 cache_root: Path, whole: Path | None = None):
        """`whole`: also time this model (the whole planned model, where it fits) side by side with the slices, to check
        the projection (benchmarks/projection.py)."""
        if settings.prompt_tokens > MAX_PROMPT:
            raise UserError(f"--prompt-tokens {settings.prompt_tokens}: slices are timed on prompts of at most {MAX_PROMPT}")
        self.arch, self.hardware, self.cache_root, self.whole = arch, hardware, Path(cache_root), whole
        self.methods = check_methods(methods, has_cuda=settings.device == "cuda")
        self.depths = slice_depths(arch, psutil.virtual_memory().available)
        self._check_disk()
        self.settings = settings.model_copy(update={
            "decode_tokens": DECODE_TOKENS, "decode_budget_s": DECODE_BUDGET_S, "repeats": REPEATS,
            "score_accuracy": False, "windows": 1,
            "window": max(256, settings.prompt_tokens)})
        self.results: dict[str, list[TrialResult]] = {}
        self.projections: dict[str, Projection] = {}
        self.disk_read_gb_s: float | None = None
        self.wall_s: dict[str, float] = {}  # "slices" (building them) and each method: Plan.measure_s

    def _check_disk(self) -> None:
        """Both slices in bf16, their quantized copies (kept until they are timed side by side), and a trial's
        scratch: GGUF writes a bf16 copy of the deeper slice."""
        bf16 = [planner.weights_bytes(slice_architecture(self.arch, d), planner.formats()["bf16"])[0]
                for d in self.depths]
        need = 2 * sum(bf16) + 3 * bf16[-1]
        self.cache_root.mkdir(parents=True, exist_ok=True)
        free = psutil.disk_usage(str(self.cache_root)).free
        if need > free:
            raise UserError(f"slices of {self.arch.name} need about {need / GIB:.1f} GiB of disk under "
                            f"{self.cache_root}; {free / GIB:.1f} GiB is free")

    def slice_dir(self, layers: int) -> Path:
        return slice_dir(self.cache_root, self.arch.name, layers)

    def events(self, cancel: threading.Event | None = None) -> Iterator[Event]:
        """Build both slices (once; cached), then per method both depths side by side, then its projection."""
        cancel = cancel or threading.Event()
        started = time.perf_counter()
        self.settings = pace.with_baseline(self.settings)  # the machine's pace before any slice work
        deep = self.slice_dir(self.depths[-1])
        for i, layers in enumerate(reversed(self.depths)):  # the shallow slice links the deep one's first shards
            yield Progress(method="slices", step="build", fraction=i / len(self.depths), stage="slice",
                           message=f"{layers}-layer slice of {self.arch.name} (random bf16 weights, cached)")
            sliced = slice_architecture(self.arch, layers)
            synthetic.build(sliced, self.slice_dir(layers), bundled_model_dir(),
                            {"slice_of": self.arch.name, "layers": layers, "need_bytes": need_bytes(sliced)},
                            reuse=deep if layers != self.depths[-1] else None)
        yield Progress(method="slices", step="build", fraction=1.0, message="disk read rate (for GGUF streamed by mmap)",
                       stage="slice")
        shards = sorted(self.slice_dir(self.depths[-1]).glob("*.safetensors"), key=lambda p: p.stat().st_size)
        self.disk_read_gb_s = probe_disk_read_gb_s(shards[-1])
        self.wall_s["slices"] = time.perf_counter() - started
        for method in self.methods:
            if cancel.is_set():
                return
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="slice-trials-", dir=self.cache_root) as tmp:
                results = yield from self._method(method, Path(tmp), cancel)
            self.wall_s[method] = time.perf_counter() - started
            self.results[method] = results
            if len(results) >= 2 and all(r.status == "ok" for r in results[:2]):  # a stop may leave one
                note = "; ".join(filter(None, [
                    registry.backend_for(registry.parse_methods(method)[0].weights).uncalibrated_note_for(
                        self.slice_dir(self.depths[0])), routing_note(self.arch, self.settings.prompt_tokens),
                    torch_linear_attention_note() if self.arch.is_hybrid else ""]))
                self.projections[method] = project(results[:2], self.depths, self.arch.num_hidden_layers,
                                                   self.settings.prompt_tokens, note, self._layer_ratio(method))

    def _layer_ratio(self, method: str) -> float:
        """GGUF mixes vary by layer position: the planned model's average layer ÷ the layer the slices add, in bytes."""
        return gguf_mix.layer_ratio(method, self.arch, self.depths) if method in gguf_mix.BASE else 1.0

    def _method(self, method: str, tmp: Path, cancel: threading.Event):
        """Quantize and save `method` at each depth (and the whole model, with `whole`), then load and time them
        side by side in one process: separate processes minutes apart each see a different shared machine."""
        sources = [(f"@{d}L", self.slice_dir(d)) for d in self.depths]
        if self.whole is not None:
            sources.append(("whole", self.whole))
        results: list[TrialResult] = []
        for label, source in sources:
            if cancel.is_set():
                return results
            result = yield from self._trial(method, label, source, tmp / label, cancel)
            results.append(result)
            if result.status != "ok":
                yield Result(result=result.model_copy(update={"method": f"{method} {label}"}), stage="slice",
                             depth=_depth(label))
                return results
        saved = results
        results = yield from self._timed(method, sources, saved, tmp, cancel)
        if self._width(method, results) > 1 and not cancel.is_set():  # a range wider than its figure: once more
            yield Progress(method=_timing_label(method, sources), step="benchmark",
                           stage="slice", message="the projected range is wider than the figure: timed side by side "
                           "once more, the narrower kept")
            again = yield from self._timed(method, sources, saved, tmp, cancel)
            if all(r.status == "ok" for r in again) and self._width(method, again) < self._width(method, results):
                results = again
        for (label, _), result in zip(sources, results):
            yield Result(result=result.model_copy(update={"method": f"{method} {label}"}), stage="slice",
                         depth=_depth(label))
        return results

    def _timed(self, method: str, sources: list, saved: list[TrialResult], tmp: Path, cancel: threading.Event):
        """The saved models of every depth timed side by side in one process: `saved` with their speeds, or each
        failed (cancelled) with why."""
        timing = time_side_by_side(registry.parse_methods(method)[0], [tmp / label / method for label, _ in sources],
                                   sources[0][1], self.settings, saved[0].device or "", tmp, cancel,
                                   probe_dir=paths.probe_dir(self.cache_root))
        timed = yield from _relabelled(timing, _timing_label(method, sources), None)
        if len(timed) == len(saved):
            return [r.model_copy(update={k: getattr(t, k) for k in (*SPEED_FIELDS, "notes")}) for r, t in zip(saved, timed)]
        status = "cancelled" if cancel.is_set() else "failed"
        why = "cancelled by the user" if cancel.is_set() else "timing side by side failed (its log is in the trial folder)"
        return [r.model_copy(update={"status": status, "reason": why}) for r in saved]

    def _width(self, method: str, results: list[TrialResult]) -> float:
        """The projected decode's range ÷ the figure (above 1: shown as unreliable); 0 where there is none."""
        if len(results) < 2 or any(r.status != "ok" for r in results[:2]):
            return 0.0
        p = project(results[:2], self.depths, self.arch.num_hidden_layers, self.settings.prompt_tokens, "",
                    self._layer_ratio(method))
        span = p.decode_tok_s_range
        if not p.decode_tok_s or not span:
            return 0.0
        return math.inf if span[1] is None else (span[1] - span[0]) / p.decode_tok_s

    def _trial(self, method: str, label: str, source: Path, work_dir: Path, cancel: threading.Event):
        """Quantize and save (no reload, no timing yet); the saved model stays in `work_dir` for the timing job."""
        request = RunRequest(model_dir=str(source), methods=[method], settings=self.settings.model_copy(
            update={"benchmark": False}), cache_dir=self.cache_root, work_dir=work_dir)
        run = Run(request, self.hardware)
        yield from _relabelled(run.events(cancel), f"{method} {label}", _depth(label))
        return run.results[0] if run.results else TrialResult(
            method=method, backend="", bits=0, status="cancelled", reason="cancelled by the user")


def _timing_label(method: str, sources: list) -> str:
    """`gguf-q8_0 @1L + @2L`: the depths a method's slices are timed at side by side."""
    return f"{method} {' + '.join(label for label, _ in sources)}"


def _depth(label: str) -> int | None:
    """`@2L` → 2; `whole` → None."""
    return int(label[1:-1]) if label.startswith("@") else None


def _relabelled(events, label: str, depth: int | None):
    """Yield `events` as a slice's (stage `slice`, its depth; `label` as their method, "gguf-q8_0 @2L", for the eye):
    a face never takes a slice's numbers for the proxy's; a trial's result becomes a progress line, its numbers come
    after the timing. Returns what `events` returns."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        if isinstance(event, Result):
            r = event.result
            yield Progress(method=label, step="save", fraction=1.0, message=f"{r.status}: saved "
                           f"{(r.size_bytes or 0) / MIB:,.1f} MiB" if r.status == "ok" else f"{r.status}: {r.reason}",
                           stage="slice", depth=depth)
        else:  # the slice's own reference step too: a face must not show it as the proxy's
            yield event.model_copy(update={"method": label, "stage": "slice", "depth": depth})


def _beside_bound(p: Projection, bound: float) -> Projection:
    """A projection faster than the bandwidth bound: the deeper slice was slower by less than reading its layer's
    bytes takes — noise under a large fixed part (an unquantized lm_head hides a small layer), or a bound measured
    low. Both figures are kept, side by side, and the basis says so."""
    note = (f"projected {p.decode_tok_s:.3g} tok/s, above the bandwidth bound of {bound:.3g} measured here: the two "
            "depths differ by less than reading a layer takes (noise) or the bound is low; both are shown")
    return p.model_copy(update={"basis": f"{p.basis}; {note}", "above_bound": bound})


def _stack_projection(projections: dict[str, Projection], name: str) -> Projection | None:
    """A KV stack's speed: its weights' projection, saying that the cache's own cost is not in it."""
    weights, _, kv = name.partition("+")
    p = projections.get(weights) if kv else None
    if p is None:
        return None
    return p.model_copy(update={"basis": f"{p.basis}; the slices timed {weights} alone: the {kv} cache is sized "
                                         "for the planned context, its (de)quantizing time is not projected"})


def attach(plan: Plan, projections: dict[str, Projection], disk_read_gb_s: float | None) -> Plan:
    """The plan with each measured method's projection beside its bandwidth bound; GGUF that does not fit in RAM
    also gets the speed of streaming its weights from disk (mmap), from the measured read rate."""
    rows = []
    for row in plan.plans:
        p = projections.get(row.method) or _stack_projection(projections, row.method)
        update: dict = {}
        if p is not None and p.decode_tok_s and row.decode_tok_s_bound and p.decode_tok_s > row.decode_tok_s_bound:
            p = _beside_bound(p, row.decode_tok_s_bound)
        if p is not None:
            update = {"projection": p, "projected_decode_tok_s": p.decode_tok_s, "projected_prefill_tok_s": p.prefill_tok_s}
            if p.decode_tok_s and row.decode_tok_s_bound:
                update["bound_fraction"] = p.decode_tok_s / row.decode_tok_s_bound
        if row.method.startswith("gguf-") and not row.fits and plan.target.device_type == "cpu" and disk_read_gb_s:
            streamed = disk_read_gb_s * 1e9 / row.weights_bytes  # every weight read from disk once a token
            update["streamed_decode_tok_s"] = min(streamed, p.decode_tok_s) if p and p.decode_tok_s else streamed
        rows.append(row.model_copy(update=update))
    return plan.model_copy(update={"plans": rows, "disk_read_gb_s": disk_read_gb_s})
