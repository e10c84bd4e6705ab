"""Runs inside a fresh child process: one reference step or one trial, reporting events as JSON lines.

`python -m qadvisor.core.measure.worker JOB.json`; events go to the file descriptor in QADVISOR_EVENT_FD, so
whatever the libraries print on stdout cannot corrupt them.
"""

from __future__ import annotations

import gc
import os
import resource
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from qadvisor import format as f
from qadvisor.core.measure import artifacts
from qadvisor.core.measure.jobs import Job, Reference
from qadvisor.core.measure.modelio import paragraphs
from qadvisor.quantizers import fallback, registry
from qadvisor.quantizers.base import TrialContext, linear_attention_fallback, load_hf, weights_bytes_on_disk
from qadvisor.quantizers.kvcache import cache_factory
from qadvisor.schemas.events import Error, EventEnvelope, Metric, Progress, Result
from qadvisor.schemas.result import TrialResult

REFERENCE_FILE = "reference.json"
TIMING_BUDGET_S = 3.0  # seconds the slowest model's timed generation may take, when a timing job names none
SPEED_FIELDS = ("prefill_tok_s", "prefill_tok_s_spread", "decode_tok_s", "decode_tok_s_spread", "ttft_ms",
                "kv_cache_bytes", "decode_tokens", "decode_cv", "repeats", "cpu_contention", "pace_ratio")
LOGPROBS_FILE = "reference_logprobs.pt"


class Emitter:
    def __init__(self, fd: int, method: str, stage: str = "trial"):
        self.stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self.method, self.stage = method, stage

    def send(self, event) -> None:
        self.stream.write(EventEnvelope(event=event).model_dump_json() + "\n")

    def progress(self, step: str, fraction: float | None = None, message: str = "") -> None:
        self.send(Progress(method=self.method, step=step, fraction=fraction, message=message, stage=self.stage))

    def metric(self, name: str, value: float) -> None:
        self.send(Metric(method=self.method, name=name, value=float(value), stage=self.stage))


def _prepare(job: Job):
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(job.settings.threads)
    torch.manual_seed(0)
    from qadvisor.core.measure.metrics import eval_windows

    tokenizer = AutoTokenizer.from_pretrained(str(job.model_dir))
    ids = tokenizer(job.eval_text.read_text(encoding="utf-8")).input_ids
    windows = eval_windows(ids, job.settings.window, job.settings.windows)
    return tokenizer, windows


def run_reference(job: Job, out: Emitter) -> None:
    import torch

    from qadvisor.core.measure.metrics import logprobs, perplexity

    out.progress("load", None, "tokenize the evaluation text")
    _, windows = _prepare(job)
    model = load_hf(job.model_dir, torch.float32, job.settings.device)
    lp, ppl, scored = None, None, 0
    if job.settings.score_accuracy:
        scored = int(windows.numel() - len(windows))
        out.progress("evaluate", None, f"reference log-probs on {scored} tokens")
        lp = logprobs(model, windows, job.settings.device)
        ppl = perplexity(lp, windows)
    out.progress("save", None, "measure the bf16 baseline size")
    with tempfile.TemporaryDirectory(dir=job.work_dir) as tmp:
        model.to(torch.bfloat16).save_pretrained(tmp)
        bf16_bytes = weights_bytes_on_disk(Path(tmp))
    job.cache_dir.mkdir(parents=True, exist_ok=True)
    if lp is not None:
        torch.save(lp, job.cache_dir / LOGPROBS_FILE)
    ref = Reference(params=sum(p.numel() for p in model.parameters()), bf16_bytes=bf16_bytes, ref_ppl=ppl,
                    eval_tokens=scored)
    (job.cache_dir / REFERENCE_FILE).write_text(ref.model_dump_json())


def _context(job: Job, out: Emitter, calib: list[str]):
    """What a backend gets besides the spec, the same for a trial and a timing job."""
    s = job.settings
    return TrialContext(device=s.device, calib_texts=calib, threads=s.threads, progress=out.progress,
                        max_tokens=max(s.window, s.prompt_tokens + s.decode_tokens), calibrate=s.score_accuracy,
                        fast_bf16=job.fast_bf16, probe_dir=job.probe_dir, safe_level=job.safe_level)


class Steps:
    """Announces each step of a trial and adds up the seconds it took (TrialResult.step_s)."""

    def __init__(self, out: Emitter, result: TrialResult):
        self.out, self.result = out, result

    @contextmanager
    def __call__(self, name: str, message: str, fraction: float | None = None):
        self.out.progress(name, fraction, message)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.result.step_s[name] = self.result.step_s.get(name, 0.0) + time.perf_counter() - t0

    def record(self, name: str, value: float) -> None:
        setattr(self.result, name, value)
        self.out.metric(name, value)


def run_trial(job: Job, out: Emitter, started: float) -> TrialResult:
    """A trial's first process: quantize (or take the cached model), save, and the sizes on disk. The runner then
    measures the saved model in a process of its own (run_measure)."""
    recipe = job.recipe
    spec = recipe.weights
    backend = registry.backend_for(spec)
    ref = Reference.model_validate_json((job.cache_dir / REFERENCE_FILE).read_text())
    result = TrialResult(method=recipe.name, backend=spec.backend, bits=spec.bits, status="ok", device=job.device_label)
    steps = Steps(out, result)
    with steps("load", "calibration text"):
        calib = paragraphs(job.calib_text)
    save_dir = _quantized(job, spec, backend, _context(job, out, calib), steps)
    result.mix = backend.made_with(save_dir)
    result.bits = result.mix.bits_per_weight if result.mix else result.bits
    steps.record("size_bytes", weights_bytes_on_disk(save_dir))
    steps.record("compression_ratio", ref.bf16_bytes / result.size_bytes)
    steps.record("size_reduction_pct", 100.0 * (1 - result.size_bytes / ref.bf16_bytes))
    result.peak_rss_bytes = _peak_rss()
    result.total_s = time.perf_counter() - started
    return result


def saved_model(job: Job) -> Path:
    """Where the trial's first process left the quantized model: the work folder when it saved one there (quantized
    now, or a cached one copied for --keep-models), else the cache entry it found."""
    if job.recipe.weights.source:
        return Path(job.recipe.weights.source)
    here = job.work_dir / job.recipe.weights.name
    return here if here.is_dir() or job.artifact_dir is None else job.artifact_dir / artifacts.MODEL_FOLDER


def run_measure(job: Job, out: Emitter, started: float) -> TrialResult:
    """A trial's second process: load the saved model, score it against the reference and time it."""
    from qadvisor.core.measure.metrics import compute_dtype

    recipe, spec = job.recipe, job.recipe.weights
    backend = registry.backend_for(spec)
    ref = Reference.model_validate_json((job.cache_dir / REFERENCE_FILE).read_text())
    result = job.partial.model_copy(deep=True)
    steps = Steps(out, result)
    with steps("reload", "tokenizer and evaluation text"):  # a step on from quantizing: the panels move forward
        _, windows = _prepare(job)
    save_dir = saved_model(job)
    with steps("reload", "load the saved model back"):
        model = backend.load(save_dir, spec, _context(job, out, []))
        model.eval()
    steps.record("weights_mem_bytes", backend.memory_bytes(model))
    result.compute_dtype = compute_dtype(model)
    notes, result.safe_config = _notes(job, backend, model)
    result.notes = [spec.summary, *notes] if spec.source else notes  # a checkpoint says what it is
    s, new_cache = job.settings, _kv_cache(recipe, job)
    if s.score_accuracy:
        with steps("evaluate", f"perplexity, KL and top-1 on {ref.eval_tokens} evaluation tokens"):
            _evaluate(model, windows, ref, job, new_cache, steps)
    elif spec.source:
        result.reason = ("accuracy n/a: no reference model to compare with, give one with --reference DIR; vs bf16 is against "
                         "parameters × 2 bytes, an estimate")
    else:
        result.reason = "; ".join(filter(None, ["accuracy n/a: random weights",
                                                backend.uncalibrated_note_for(job.model_dir)]))
    if s.benchmark:
        with steps("benchmark", f"prompt {s.prompt_tokens}, up to {s.decode_tokens} new tokens, warm-up + at least "
                                f"{s.repeats} repeats ({s.min_measure_s:g} s of timing)"):
            _benchmark(model, windows, s, new_cache, steps)
    steps.record("peak_rss_bytes", max(_peak_rss(), result.peak_rss_bytes or 0))
    result.total_s = (result.total_s or 0.0) + time.perf_counter() - started
    if not job.keep_model and save_dir == job.work_dir / spec.name:
        shutil.rmtree(save_dir, ignore_errors=True)
    return result


def _notes(job: Job, backend, model) -> tuple[list[str], str | None]:
    """What the measured model ran with that its result must say, and the safe configuration it ran in, if any: the
    level the runner gave the trial, or a deeper one the backend's own probe chose (llama.cpp's AMX probe)."""
    notes = list(backend.notes(model)) + list(filter(None, [linear_attention_fallback(model)]))
    level = max(job.safe_level, getattr(model, "safe_level", 0))
    if level <= 0:
        return notes, None
    verdict = fallback.kept(job.probe_dir, backend.name, backend.build_key())
    died, seen = (verdict.signal, verdict.method) if verdict and verdict.signal else ("a fatal signal", job.method)
    notes.append(fallback.Verdict(level=level, signal=died, method=seen).note(backend.safe_configs))
    return notes, backend.safe_configs[level - 1].name


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _quantized(job: Job, spec, backend, ctx, steps: Steps) -> Path:
    """The saved quantized model: from the cache when an entry with the trial's key is there (artifacts), else
    quantized and saved now (and stored in the cache). Returns its folder."""
    if spec.source:  # a checkpoint measured as it is: the user's files, never copied, cached or removed
        steps.out.progress("quantize", 1.0, f"nothing to quantize: {Path(spec.source).name} is measured as shipped")
        return Path(spec.source)
    entry = job.artifact_dir
    hit = artifacts.lookup(entry) if entry is not None and job.reuse_artifact else None
    save_dir = job.work_dir / spec.name
    if hit is not None:
        artifacts.mark_used(entry)
        steps.result.cached = True
        steps.record("quantize_s", hit.quantize_s)
        steps.out.progress("quantize", 1.0, f"from the cache (quantized in {hit.quantize_s:.1f} s on {hit.made_at[:10]})")
        if not job.keep_model:
            shutil.rmtree(save_dir, ignore_errors=True)  # an earlier attempt's copy: the measure step reads the entry
            return entry / artifacts.MODEL_FOLDER
        with steps("save", "copy the cached model to the kept models' folder"):
            shutil.rmtree(save_dir, ignore_errors=True)
            shutil.copytree(entry / artifacts.MODEL_FOLDER, save_dir)
        return save_dir
    with steps("quantize", spec.summary, 0.0):
        model = backend.quantize(job.model_dir, spec, ctx)
    steps.record("quantize_s", steps.result.step_s["quantize"])
    with steps("save", "write the quantized model"):
        shutil.rmtree(save_dir, ignore_errors=True)
        save_dir.mkdir(parents=True)
        backend.save(model, spec, save_dir)
        del model
        gc.collect()
        if entry is not None:
            artifacts.store(entry, save_dir, spec.name, steps.result.quantize_s, job.artifact_inputs)
            artifacts.prune(entry.parent, keep=entry.name)
    return save_dir


def _kv_cache(recipe, job: Job):
    """A stacked KV-cache method: every generation gets a fresh quantized cache (None without one)."""
    if recipe.kv is None:
        return None
    from transformers import AutoConfig

    return cache_factory(recipe.kv, AutoConfig.from_pretrained(str(job.model_dir)))


def _evaluate(model, windows, ref: Reference, job: Job, new_cache, steps: Steps) -> None:
    import torch

    from qadvisor.core.measure.metrics import accuracy

    ref_lp = torch.load(job.cache_dir / LOGPROBS_FILE, weights_only=True)  # a cached file: no pickle
    acc = accuracy(model, windows, ref_lp, job.settings.device, new_cache)
    del ref_lp
    steps.record("ppl", acc.ppl)
    steps.record("ppl_delta_pct", 100.0 * (acc.ppl / ref.ref_ppl - 1))
    steps.record("kl_mean", acc.kl_mean)
    steps.record("top1_agreement", acc.top1_agreement)
    steps.result.first_call_s = acc.first_call_extra_s


def _benchmark(model, windows, s, new_cache, steps: Steps) -> None:
    from qadvisor.core.measure.metrics import speed

    prompt = windows.flatten()[: s.prompt_tokens]
    sp = speed(model, prompt, s.decode_tokens, s.repeats, s.device, new_cache, s.decode_budget_s, s.min_measure_s,
               s.threads, s.pace_baseline_s)
    for name in SPEED_FIELDS:
        if getattr(sp, name) is not None:  # a runtime that keeps its KV cache to itself has no count
            steps.record(name, getattr(sp, name))


def run_timing(job: Job, out: Emitter) -> list[TrialResult]:
    """Load the saved quantized models of one method and time them side by side (metrics.side_by_side): one
    result per model, in order, with the speed fields only."""
    from qadvisor.core.measure.metrics import side_by_side

    spec = job.recipe.weights
    backend = registry.backend_for(spec)
    _, windows = _prepare(job)
    s = job.settings
    ctx = _context(job, out, [])
    models = []
    for i, saved in enumerate(job.timed):
        out.progress("reload", i / len(job.timed), f"load {saved.parent.name}")
        models.append(backend.load(saved, spec, ctx))
        models[-1].eval()
    out.progress("benchmark", None, f"{len(models)} models side by side: prompt {s.prompt_tokens}, up to "
                                    f"{s.decode_tokens} new tokens, warm-up + {s.repeats} rounds")
    speeds = side_by_side(models, windows.flatten()[: s.prompt_tokens], s.decode_tokens, s.repeats, s.device,
                          s.decode_budget_s or TIMING_BUDGET_S, s.threads, s.pace_baseline_s)
    results = []
    for model, sp in zip(models, speeds):
        notes, safe = _notes(job, backend, model)
        results.append(TrialResult(method=job.method, backend=spec.backend, bits=spec.bits, status="ok", notes=notes,
                                   safe_config=safe, device=job.device_label, **{k: getattr(sp, k) for k in SPEED_FIELDS}))
    return results


def warm_imports() -> None:
    """What every job needs, imported before its clock starts: the result's start_s is the process start with these."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import transformers.modeling_utils  # noqa: F401  (1.5 s of the first from_pretrained: integrations, torchao)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401
    from transformers.models.qwen2 import modeling_qwen2  # noqa: F401

    import qadvisor.core.measure.metrics  # noqa: F401
    import qadvisor.quantizers.registry  # noqa: F401

    # What the imports made lives as long as the process: a full collection (the backends call gc.collect() at
    # every load and layer; hqq three times a load) then skips its 450,000 objects, 0.18 s each time here.
    gc.freeze()


def _failure(exc: Exception) -> str:
    """One line for a failed job. Out of memory says so, with the peak this process reached: the allocator's own
    message (empty for MemoryError, "can't allocate memory" deep in a traceback for torch) means little to a user."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower():
        return (f"out of memory: the trial reached {f.gib(peak)} of RAM and could not allocate more "
                f"({type(exc).__name__}); a smaller model or a machine with more free RAM would measure it")
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def main(argv: list[str]) -> int:
    job = Job.model_validate_json(Path(argv[1]).read_text())
    out = Emitter(int(os.environ["QADVISOR_EVENT_FD"]), job.method or "reference",
                  "reference" if job.work == "reference" else "trial")
    warm_imports()
    started = time.perf_counter()
    try:
        if job.work == "reference":
            run_reference(job, out)
        elif job.work == "timing":
            for result in run_timing(job, out):
                out.send(Result(result=result))
        elif job.work == "measure":
            out.send(Result(result=run_measure(job, out, started)))
        else:
            out.send(Result(result=run_trial(job, out, started)))
    except Exception as exc:  # the runner reports it as this method's failure and goes on
        import traceback

        traceback.print_exc()  # into the trial's log file
        out.send(Error(method=out.method, message=_failure(exc)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
