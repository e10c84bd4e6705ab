"""Runs inside a fresh child process: one reference step or one trial, reporting events as JSON lines.

`python -m qadvisor.core.worker JOB.json`; events go to the file descriptor in QADVISOR_EVENT_FD, so
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
from pathlib import Path

from qadvisor.core.jobs import Job, Reference
from qadvisor.models.events import Error, EventEnvelope, Metric, Progress, Result
from qadvisor.models.result import TrialResult

REFERENCE_FILE = "reference.json"
TIMING_BUDGET_S = 3.0  # seconds the slowest model's timed generation may take, when a timing job names none
SPEED_FIELDS = ("prefill_tok_s", "prefill_tok_s_spread", "decode_tok_s", "decode_tok_s_spread", "ttft_ms",
                "kv_cache_bytes", "decode_tokens")
LOGPROBS_FILE = "reference_logprobs.pt"


class Emitter:
    def __init__(self, fd: int, method: str):
        self.stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self.method = method

    def send(self, event) -> None:
        self.stream.write(EventEnvelope(event=event).model_dump_json() + "\n")

    def progress(self, step: str, fraction: float | None = None, message: str = "") -> None:
        self.send(Progress(method=self.method, step=step, fraction=fraction, message=message))

    def metric(self, name: str, value: float) -> None:
        self.send(Metric(method=self.method, name=name, value=float(value)))


def _prepare(job: Job):
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(job.settings.threads)
    torch.manual_seed(0)
    from qadvisor.core.metrics import eval_windows

    tokenizer = AutoTokenizer.from_pretrained(str(job.model_dir))
    ids = tokenizer(job.eval_text.read_text(encoding="utf-8")).input_ids
    windows = eval_windows(ids, job.settings.window, job.settings.windows)
    return tokenizer, windows


def run_reference(job: Job, out: Emitter) -> None:
    import torch

    from qadvisor.core.metrics import logprobs, perplexity
    from qadvisor.quantizers.base import load_hf, weights_bytes_on_disk

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
    from qadvisor.quantizers.base import TrialContext

    s = job.settings
    return TrialContext(device=s.device, calib_texts=calib, threads=s.threads, progress=out.progress,
                        max_tokens=max(s.window, s.prompt_tokens + s.decode_tokens), calibrate=s.score_accuracy)


def run_trial(job: Job, out: Emitter) -> TrialResult:
    import torch

    from qadvisor.core.metrics import accuracy, compute_dtype, speed
    from qadvisor.quantizers import registry
    from qadvisor.quantizers.base import weights_bytes_on_disk

    started = time.perf_counter()
    recipe = registry.parse_methods(job.method)[0]
    spec = recipe.weights
    backend = registry.backend_for(spec)
    ref = Reference.model_validate_json((job.cache_dir / REFERENCE_FILE).read_text())
    result = TrialResult(method=recipe.name, backend=spec.backend, bits=spec.bits, status="ok", device=job.device_label)

    def record(name: str, value: float) -> None:
        setattr(result, name, value)
        out.metric(name, value)

    out.progress("load", None, "tokenizer and evaluation text")
    _, windows = _prepare(job)
    calib = [c for c in job.calib_text.read_text(encoding="utf-8").split("\n\n") if c.strip()]
    s = job.settings
    ctx = _context(job, out, calib)

    out.progress("quantize", 0.0, f"{spec.summary}")
    t0 = time.perf_counter()
    model = backend.quantize(job.model_dir, spec, ctx)
    record("quantize_s", time.perf_counter() - t0)

    out.progress("save", None, "write the quantized model")
    save_dir = job.work_dir / spec.name
    shutil.rmtree(save_dir, ignore_errors=True)
    save_dir.mkdir(parents=True)
    backend.save(model, spec, save_dir)
    size = weights_bytes_on_disk(save_dir)
    record("size_bytes", size)
    record("compression_ratio", ref.bf16_bytes / size)
    record("size_reduction_pct", 100.0 * (1 - size / ref.bf16_bytes))
    del model
    gc.collect()
    if job.keep_model and not (s.benchmark or s.score_accuracy):  # a slice: the timing job loads it (side by side)
        result.total_s = time.perf_counter() - started
        return result

    out.progress("reload", None, "load the saved model back")
    model = backend.load(save_dir, spec, ctx)
    model.eval()
    record("weights_mem_bytes", backend.memory_bytes(model))
    result.compute_dtype = compute_dtype(model)
    new_cache = None
    if recipe.kv is not None:  # a stacked KV-cache method: every generation gets a fresh quantized cache
        from transformers import AutoConfig

        from qadvisor.quantizers.kvcache import cache_factory

        new_cache = cache_factory(recipe.kv, AutoConfig.from_pretrained(str(job.model_dir)))

    if job.settings.score_accuracy:
        out.progress("evaluate", None, f"perplexity, KL and top-1 on {ref.eval_tokens} held-out tokens")
        ref_lp = torch.load(job.cache_dir / LOGPROBS_FILE, weights_only=True)  # a cached file: no pickle
        acc = accuracy(model, windows, ref_lp, job.settings.device, new_cache)
        del ref_lp
        record("ppl", acc.ppl)
        record("ppl_delta_pct", 100.0 * (acc.ppl / ref.ref_ppl - 1))
        record("kl_mean", acc.kl_mean)
        record("top1_agreement", acc.top1_agreement)
    else:
        result.reason = "; ".join(filter(None, ["accuracy n/a: random weights", backend.uncalibrated_note]))

    if s.benchmark:
        out.progress("benchmark", None, f"prompt {s.prompt_tokens}, {s.decode_tokens} new tokens, warm-up + "
                                        f"{s.repeats} repeats")
        prompt = windows.flatten()[: s.prompt_tokens]
        sp = speed(model, prompt, s.decode_tokens, s.repeats, s.device, new_cache, s.decode_budget_s)
        for name in SPEED_FIELDS:
            if getattr(sp, name) is not None:  # a runtime that keeps its KV cache to itself has no count
                record(name, getattr(sp, name))
    record("peak_rss_bytes", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux reports KiB
    result.total_s = time.perf_counter() - started
    if not job.keep_model:
        shutil.rmtree(save_dir, ignore_errors=True)
    return result


def run_timing(job: Job, out: Emitter) -> list[TrialResult]:
    """Load the saved quantized models of one method and time them side by side (metrics.side_by_side): one
    result per model, in order, with the speed fields only."""
    from qadvisor.core.metrics import side_by_side
    from qadvisor.quantizers import registry

    spec = registry.parse_methods(job.method)[0].weights
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
                          s.decode_budget_s or TIMING_BUDGET_S)
    return [TrialResult(method=job.method, backend=spec.backend, bits=spec.bits, status="ok", device=job.device_label,
                        **{k: getattr(sp, k) for k in SPEED_FIELDS}) for sp in speeds]


def main(argv: list[str]) -> int:
    job = Job.model_validate_json(Path(argv[1]).read_text())
    out = Emitter(int(os.environ["QADVISOR_EVENT_FD"]), job.method or "reference")
    try:
        if job.kind == "reference":
            run_reference(job, out)
        elif job.kind == "timing":
            for result in run_timing(job, out):
                out.send(Result(result=result))
        else:
            out.send(Result(result=run_trial(job, out)))
    except Exception as exc:  # the runner reports it as this method's failure and goes on
        import traceback

        traceback.print_exc()  # into the trial's log file
        out.send(Error(method=out.method, message=f"{type(exc).__name__}: {exc}".splitlines()[0][:300]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
