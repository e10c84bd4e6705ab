"""The saved run: versioned, validated on load, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from qadvisor.schemas.hardware import HardwareInfo
from qadvisor.schemas.jsonfile import read_json_object, validate_versioned, write_text_atomic
from qadvisor.schemas.mix import GgufMix
from qadvisor.schemas.plan import Plan, PlanCheck
from qadvisor.schemas.priorities import Priorities
from qadvisor.schemas.recommendation import Recommendation
from qadvisor.schemas.result import TrialResult

# 2: results say where their accuracy comes from (accuracy_basis) and what they ran with (safe_config,
# cpu_contention); the recommendation lists every archetype a method fits; the planned model's accuracy may be streamed.
# 3: a plan's target says its `device_type` (cpu / gpu), and its rows a `size_class` (high / medium / low / base)
# where they said an archetype by size: archetypes are the advisor's alone
SCHEMA_VERSION = 3


class EvalText(BaseModel):
    """The text accuracy was scored on, and whether the model measured was held out from it."""
    path: str
    source: str  # what it is, in words
    held_out: Literal["yes", "no", "unknown"]  # yes: the bundled model's own split; unknown: a public or user text
    why: str = ""  # why the standard text (wikitext-2) was not used, where it was not

    def words(self, tokens: int) -> str:
        """`2040 held-out tokens (…)` only where held out; else what the tokens are and that they may not be."""
        if self.held_out == "yes":
            return f"{tokens} held-out tokens ({self.source})"
        if self.held_out == "no":
            return f"{tokens} tokens of {self.source}: not held out from this model"
        return f"{tokens} tokens of {self.source} (whether the model saw it in training is unknown)"


class ModelInfo(BaseModel):
    name: str
    path: str
    params: int
    bf16_bytes: int  # the model's weights saved in bf16: the baseline for compression
    bf16_basis: str = "measured"  # or an estimate's formula (a checkpoint measured without its unquantized model)
    checkpoints: list[str] = []  # quantized checkpoints measured as shipped (--model CHECKPOINT): their paths
    ref_ppl: float | None  # fp32 perplexity on the evaluation text; None for random (synthetic) weights
    eval_tokens: int  # tokens scored for the accuracy metrics
    eval_text: EvalText | None = None  # None: an export written before the text was recorded


class RunSettings(BaseModel):
    prompt_tokens: int
    decode_tokens: int
    repeats: int
    min_measure_s: float | None = None  # repeats were added until the timed generations took this long
    threads: int
    device: str
    reuse_cache: bool = True  # False: --no-cache (reference and quantized models computed again)
    pace_baseline_s: float | None = None  # core.pace's fixed workload at the run's start (None: not checked)


class TargetAdvice(BaseModel):
    """`--plan-for`: the recommendation for the model the team will deploy. Each result's `reason` names the basis
    of its numbers: size from the planner (estimate), decode projected from slices measured here or the bound for
    a GPU that is not here, accuracy published at the planned model's size or the proxy's (`accuracy_basis`)."""

    model: str
    target: str
    results: list[TrialResult]
    recommendation: Recommendation | None
    left_out: dict[str, str] = {}  # method → why the target advice has no numbers for it
    published: dict | None = None  # Qwen's published accuracy of its own quantized releases of that size
    # for a GPU target: Qwen's published decode tok/s of those releases on A100 80GB (transformers, vLLM)
    published_speed: dict | None = None
    comparison: list[str] = []  # how the target advice's pick relates to the proxy's
    accuracy_note: str = ""  # the methods left out of the pick for want of accuracy evidence at the planned model's size


class LayerTime(BaseModel):
    """A streamed pass's seconds per decoder layer, split by where they went."""

    read: float  # building the layer and reading its weights from the checkpoint
    quantize: float  # the method's library quantizing it (a calibrated method's solve included)
    compute: float  # the evaluation text through it

    def words(self) -> str:
        return f"read {self.read:.2f} + quantize {self.quantize:.2f} + compute {self.compute:.2f}"


class StreamedMethod(BaseModel):
    """One method's accuracy on the planned model's own weights, streamed one layer at a time, or why it has none."""

    method: str
    ppl: float | None = None
    ppl_delta_pct: float | None = None
    kl_mean: float | None = None
    top1_agreement: float | None = None
    seconds_per_layer: float | None = None
    layer_time: LayerTime | None = None
    error: str = ""
    mix: GgufMix | None = None  # a GGUF mix: the types its streamed sensitivities chose (its KL above is streamed)


# what a streamed GGUF figure is: the rounding llama.cpp's CPU path applies, emulated layer by layer in torch
GGUF_EMULATED = ("streamed by emulating llama.cpp's CPU path in torch (its ggml rounding of the weights and of the "
                 "activations), not run by llama.cpp's kernels or with its F16 KV cache; checked against llama.cpp "
                 "itself on random-weight Qwen2.5-0.5B and 1.5B: KL within 1 % (benchmarks/RESULTS.md)")


class StreamedAccuracy(BaseModel):
    """`--plan-for DIR` with weights (or `--model DIR --stream`): the planned model's own accuracy, layer by layer
    (core.measure.streamed), against its fp32 reference over the same evaluation text."""

    model: str
    path: str
    ref_ppl: float | None = None
    tokens: int = 0  # scored tokens
    layers: int = 0
    ref_seconds_per_layer: float | None = None
    ref_layer_time: LayerTime | None = None
    peak_rss_bytes: int | None = None
    methods: list[StreamedMethod] = []
    complete: bool = True  # False: stopped before every method streamed
    not_streamed: dict[str, str] = {}  # method → why it has no streamed accuracy (its library cannot go layer-wise)
    random_weights: bool = False  # a synthetic checkpoint: its losses say nothing of a trained model
    log: str | None = None  # where the libraries' own output went while streaming
    error: str = ""  # why nothing could be streamed (the reference failed)
    eval_text: EvalText | None = None


class HardwareKind(BaseModel):
    """--cluster: the nodes of one kind of hardware, and the advice from their results (those with this `kind`)."""

    kind: str
    hardware: HardwareInfo
    nodes: list[str]
    reference_node: str | None = None  # the node that computed the kind's reference for all of them (None: each its own)
    recommendation: Recommendation | None = None
    plan: Plan | None = None  # --plan-for on this machine's kind: slices measured on one node of the kind
    target: TargetAdvice | None = None  # the advice for the planned model on this kind


class RunExport(BaseModel):
    schema_version: int = SCHEMA_VERSION
    qadvisor_version: str
    created_at: str
    hardware: HardwareInfo
    model: ModelInfo
    settings: RunSettings
    results: list[TrialResult]
    complete: bool = True  # False: the run was stopped (Ctrl-C, cancel, quit) and `cut` was not measured
    cut: list[str] = []  # methods the stopped run did not measure
    reference_s: float | None = None  # the reference step's seconds in this run; None: read from the cache
    priorities: Priorities | None = None
    recommendation: Recommendation | None = None
    plan: Plan | None = None  # --plan-for: the planner's estimate for a deployment target
    plan_check: list[PlanCheck] = []  # the planner's predicted weight bytes next to the measured ones
    target: TargetAdvice | None = None  # --plan-for: advice for that model, projected from this run
    streamed: StreamedAccuracy | None = None  # --plan-for DIR with weights: the planned model's accuracy, streamed
    kinds: list[HardwareKind] = []  # --cluster: one entry per hardware kind; `recommendation` is the first kind's


def save_export(export: RunExport, path: Path) -> None:
    write_text_atomic(path, export.model_dump_json(indent=2) + "\n")


def load_export(path: Path) -> RunExport:
    """Read a saved run, an older version brought up to this one first; every way it can be wrong becomes one
    UserError line."""
    data = read_json_object(path, "JSON export")
    if data.get("schema_version") == 1:
        data = migrate_v1(data)
    if data.get("schema_version") == 2:
        data = migrate_v2(data)
    return validate_versioned(path, data, RunExport, SCHEMA_VERSION, "export")


def migrate_v1(data: dict) -> dict:
    """A version-1 export as version 2: a recommendation's `fits` (every archetype a method qualifies for) from its
    one label per method, in the top-level advice and in each hardware kind's. The fields version 2 added have
    defaults that say what version 1 meant (accuracy measured here, no safe configuration, contention not known)."""
    for holder in [data, *data.get("kinds", []), data.get("target") or {}]:
        rec = holder.get("recommendation")
        if isinstance(rec, dict) and not rec.get("fits") and isinstance(rec.get("archetypes"), dict):
            rec["fits"] = {m: [a] for m, a in rec["archetypes"].items()}
    return {**data, "schema_version": 2}


SIZE_CLASS = {"A": "high", "C": "medium", "B": "low", "base": "base"}  # version 2's planner labels, by size band


def migrate_v2(data: dict) -> dict:
    """A version-2 export as version 3: each plan's (the run's and each hardware kind's) target `kind` becomes
    `device_type`, and its rows' size-band `archetype` a `size_class`."""
    for holder in [data, *data.get("kinds", [])]:
        plan = holder.get("plan")
        if not isinstance(plan, dict):
            continue
        target = plan.get("target")
        if isinstance(target, dict) and "kind" in target:
            target["device_type"] = target.pop("kind")
        for row in plan.get("plans", []):
            if isinstance(row, dict) and "archetype" in row:
                row["size_class"] = SIZE_CLASS.get(row.pop("archetype"), "base")
    return {**data, "schema_version": 3}
