"""What the runner hands a trial process, and what the reference step leaves in the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from qadvisor.schemas.method import Recipe
from qadvisor.schemas.result import TrialResult


class EvalSettings(BaseModel):
    window: int = 256  # tokens per evaluation window
    windows: int = 8
    prompt_tokens: int = 128
    decode_tokens: int = 32
    # At least this many timed generations, and more until they add up to min_measure_s: 3 give a median that one
    # outlier cannot move; a method whose generation takes a second (most of them, on a slow CPU) is not timed for 5.
    repeats: int = 3
    # A figure rests on at least this many seconds of timed generation: a 15 ms generation (llama.cpp on the bundled
    # model) timed 5 times is 75 ms of measuring, at the mercy of one scheduler hiccup. More repeats, not more tokens,
    # so that every method decodes the same positions (the KV cache's length changes the cost of a step).
    min_measure_s: float = 1.0
    threads: int = 1
    device: str = "cpu"
    # slices: each generation decodes as many tokens as fit in this (at least 4, at most decode_tokens)
    decode_budget_s: float | None = None
    score_accuracy: bool = True  # False for random-weight (synthetic) models: no reference to compare with
    benchmark: bool = True  # False: quantize, save and reload only (slices are timed side by side afterwards)
    pace_baseline_s: float | None = None  # core.pace's workload at the run's start; None: timings are not checked


class Job(BaseModel):
    """One child process's work; written as JSON beside its log."""

    # a trial is two processes: "trial" quantizes and saves, "measure" loads the saved model in a process that never
    # quantized (what a library leaves behind after quantizing — threads, compiled graphs — must not time the file)
    work: Literal["reference", "trial", "measure", "timing"]
    model_dir: Path
    cache_dir: Path  # holds reference.json and reference_logprobs.pt
    work_dir: Path  # where the quantized model is saved
    eval_text: Path
    calib_text: Path
    settings: EvalSettings
    recipe: Recipe | None = None  # trials and timing: what to run, as data (the child parses no names)
    device_label: str = ""
    keep_model: bool = False  # leave the quantized model in work_dir for the user
    timed: list[Path] = []  # timing: saved quantized models of `method`, timed side by side in one process
    # trials: the cache entry for this quantized model (core.measure.artifacts), None to keep none; reuse_artifact False
    # quantizes again and replaces the entry (--no-cache)
    artifact_dir: Path | None = None
    fast_bf16: bool = False  # the CPU computes bf16 natively (core.hardware.fast_bf16): the quantizers' work dtype
    artifact_inputs: dict[str, str] = {}
    probe_dir: Path | None = None  # TrialContext.probe_dir: in the cache, so a backend probes once per machine
    reuse_artifact: bool = True
    safe_level: int = 0  # how many of the backend's safe configurations are on (quantizers.fallback)
    partial: TrialResult | None = None  # measure: what the trial's quantizing process found (sizes, its steps)

    @property
    def method(self) -> str:
        return self.recipe.name if self.recipe else ""


class Reference(BaseModel):
    """The unquantized model's numbers, computed once per model and settings and reused by every trial."""

    params: int
    bf16_bytes: int
    ref_ppl: float | None  # None when accuracy is not scored
    eval_tokens: int
    bf16_basis: str = "measured"  # how bf16_bytes was found (checkpoints.ESTIMATED_BF16 without a reference)
