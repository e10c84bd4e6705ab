"""The three numbers: size on disk and in memory, speed (prefill, decode, TTFT), accuracy vs the reference."""

from __future__ import annotations

import inspect
import math
import statistics
import time
from dataclasses import dataclass

import torch

from qadvisor.core.contention import LIMIT as CONTENTION_LIMIT
from qadvisor.core.contention import CpuWatch
from qadvisor.core.pace import PaceCheck, ran_slow
from qadvisor.quantizers.tensors import nbytes


def eval_windows(token_ids: list[int], window: int, count: int) -> torch.Tensor:
    """Non-overlapping windows of held-out tokens, [count, window]; fewer if the text is short."""
    usable = min(count, len(token_ids) // window)
    if usable < 1:
        raise ValueError(f"evaluation text too short: {len(token_ids)} tokens, need at least {window}")
    return torch.tensor(token_ids[: usable * window], dtype=torch.long).view(usable, window)


@torch.no_grad()
def logprobs(model, windows: torch.Tensor, device: str):
    """Log-probabilities of each next token, [windows, window - 1, vocab], float32 on CPU."""
    out = []
    for row in windows:
        logits = model(row[None, :-1].to(device)).logits[0].float()
        out.append(torch.log_softmax(logits, dim=-1).cpu())
    return torch.stack(out)


def perplexity(token_logprobs: torch.Tensor, windows: torch.Tensor) -> float:
    targets = windows[:, 1:]
    nll = -token_logprobs.gather(-1, targets[..., None]).squeeze(-1)
    return math.exp(nll.double().mean().item())


@dataclass
class Accuracy:
    ppl: float
    kl_mean: float
    top1_agreement: float
    first_call_extra_s: float = 0.0  # the first window's seconds beyond the median later one's (first-use work)


INCREMENTAL_PROMPT = 32  # tokens prefilled before a quantized KV cache is scored token by token


@torch.no_grad()
def _window_logits(model, ids: torch.Tensor, new_cache) -> torch.Tensor:
    """Logits for every position of one window. With a quantized KV cache, a short prompt is prefilled and the
    rest decoded one token at a time, so each prediction reads keys and values back from that cache."""
    if new_cache is None:
        return model(ids[None]).logits[0]
    cache_arg = _cache_argument(model)
    out = _first_call(model, ids[None, :INCREMENTAL_PROMPT], new_cache, cache_arg)
    parts, past = [out.logits[0]], _cache_of(out)
    for i in range(INCREMENTAL_PROMPT, len(ids)):
        out = model(ids[None, i:i + 1], use_cache=True, **{cache_arg: past})
        parts.append(out.logits[0])
        past = _cache_of(out)
    return torch.cat(parts)


@torch.no_grad()
def accuracy(model, windows: torch.Tensor, ref_logprobs: torch.Tensor, device: str, new_cache=None) -> Accuracy:
    """Perplexity, mean KL(P_ref || P_quant) per token, and top-1 agreement with the reference. Each window is
    timed too: what the first took beyond the others is work done on first use (kernels compiled or picked), which
    "Where the time went" names apart from the scoring."""
    sums, seconds = [0.0, 0.0, 0, 0], []
    for i, row in enumerate(windows):
        start = time.perf_counter()
        logits = _window_logits(model, row[:-1].to(device), new_cache).float().cpu()
        seconds.append(time.perf_counter() - start)
        for k, value in enumerate(_sums(torch.log_softmax(logits, dim=-1), ref_logprobs[i], row[1:])):
            sums[k] += value
    extra = max(0.0, seconds[0] - statistics.median(seconds[1:])) if len(seconds) > 1 else 0.0
    nll, kl, agree, count = sums
    return Accuracy(ppl=math.exp(nll / count), kl_mean=kl / count, top1_agreement=agree / count,
                    first_call_extra_s=extra)


def _sums(lp: torch.Tensor, ref: torch.Tensor, targets: torch.Tensor) -> tuple[float, float, int, int]:
    """Summed NLL of the targets, summed KL(P_ref || P) and top-1 agreements, and the token count."""
    nll = -lp.gather(-1, targets[..., None]).sum().item()
    kl = (ref.exp() * (ref - lp)).sum().item()
    agree = int((lp.argmax(-1) == ref.argmax(-1)).sum().item())
    return nll, kl, agree, targets.numel()


def score(lp: torch.Tensor, ref: torch.Tensor, targets: torch.Tensor) -> Accuracy:
    """Log-probs of every scored token at once (core.measure.streamed), scored as `accuracy` scores a model's windows."""
    nll, kl, agree, count = _sums(lp, ref, targets)
    return Accuracy(ppl=math.exp(nll / count), kl_mean=kl / count, top1_agreement=agree / count)


@dataclass
class Speed:
    prefill_tok_s: float
    prefill_tok_s_spread: float
    decode_tok_s: float
    decode_tok_s_spread: float
    ttft_ms: float
    kv_cache_bytes: int | None  # the cache left by one generation: prompt + new_tokens - 1 positions
    decode_tokens: int  # new tokens per timed generation
    decode_cv: float | None = None  # standard deviation ÷ mean of the repeats' decode speeds
    repeats: int | None = None  # timed generations behind the median
    cpu_contention: float | None = None  # the share of the CPU other processes took while timed (core.contention)
    pace_ratio: float | None = None  # a fixed workload's time around the timing ÷ at the run's start (core.pace)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _cache_argument(model) -> str:
    """transformers 5.2x renamed `past_key_values` to `cache`; accept either."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def cache_bytes(cache) -> int | None:
    """Bytes of the tensors a cache holds (every tensor of DynamicCache's or QuantizedCache's layers, quantized
    ones unpacked, or the legacy tuples); None when it holds no tensors qadvisor can see."""
    layers = getattr(cache, "layers", None)
    groups = [list(vars(layer).values()) for layer in layers] if layers is not None else [list(p) for p in cache]
    return sum(nbytes(t) for group in groups for t in group if isinstance(t, torch.Tensor)) or None


def _first_call(model, ids, new_cache, cache_arg: str, **extra):
    """The prefill call: with a fresh cache of the trial's kind when it has one (a quantized KV cache)."""
    if new_cache is None:
        return model(ids, use_cache=True, **extra)
    return model(ids, use_cache=True, **{cache_arg: new_cache()}, **extra)


def _last_logits_only(model) -> dict:
    """Generation computes the prompt's logits at its last position only (transformers' `generate` and llama.cpp
    alike); timing every position would charge prefill with vocabulary × prompt work no deployment does."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


@torch.no_grad()
def timed_greedy(model, prompt: torch.Tensor, new_tokens: int, device: str,
                 sizes: list[int] | None = None, new_cache=None) -> tuple[float, float]:
    """One greedy generation with the KV cache: (seconds to first token, seconds for the rest).
    `sizes` receives a torch cache's bytes at the end (`kv_bytes_after` answers for llama.cpp's)."""
    step = getattr(model, "greedy_step", None)
    if step is not None and new_cache is None:
        return _timed_steps(step, prompt.tolist(), new_tokens)
    ids = prompt[None, :].to(device)
    cache_arg, last_only = _cache_argument(model), _last_logits_only(model)  # looked up before the clock starts
    _sync(device)
    start = time.perf_counter()
    out = _first_call(model, ids, new_cache, cache_arg, **last_only)
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    _sync(device)
    first = time.perf_counter()
    past = _cache_of(out)
    for _ in range(new_tokens - 1):
        out = model(token, use_cache=True, **{cache_arg: past})
        past = _cache_of(out)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
    _sync(device)
    done = time.perf_counter()
    if sizes is not None:
        sizes.append(cache_bytes(past))
    return first - start, done - first


def _timed_steps(step, prompt: list[int], new_tokens: int) -> tuple[float, float]:
    """`timed_greedy` for a model that picks the greedy token itself (llama.cpp), the same steps without tensors."""
    start = time.perf_counter()
    token = step(prompt, fresh=True)
    first = time.perf_counter()
    for _ in range(new_tokens - 1):
        token = step([token])
    done = time.perf_counter()
    return first - start, done - first


MIN_DECODE_TOKENS = 4  # three timed steps after the first token
MIN_TIMED_TOKENS = 8  # a timed run shortened to fit the measuring time still times seven steps
MAX_REPEATS = 64  # the most repeats min_measure_s may ask for


def speed(model, prompt: torch.Tensor, new_tokens: int, repeats: int, device: str, new_cache=None,
          budget_s: float | None = None, min_measure_s: float = 0.0, threads: int = 1,
          pace_baseline_s: float | None = None) -> Speed:
    """Warm up with two short generations, then the median and spread (max - min) of `repeats` timed runs at batch 1,
    more until they add up to `min_measure_s` (at most MAX_REPEATS). A timed run decodes `new_tokens`, or fewer
    where `repeats` of them would take longer than `min_measure_s`: the measuring time, not the token count, holds
    a figure still. With `budget_s`, no more tokens than fit in the budget (at least 4): a 72B layer takes seconds
    a token. The KV cache is measured apart, at the full `new_tokens`, so every method's is the same length. Where
    other processes took more than a tenth of the CPU meanwhile, or a fixed workload timed around them ran slower
    than at the run's start (`pace_baseline_s`, core.pace), the runs are timed once more after a pause and the
    quieter set counts; its share is the result's `cpu_contention`, its workload ratio `pace_ratio`."""
    step_s = _warm_up([model], prompt, device, new_cache)
    if budget_s is None:
        timed = _tokens_to_fill(new_tokens, step_s, min_measure_s / max(repeats, 1))
    else:
        timed, min_measure_s = _tokens_in_budget(new_tokens, step_s, budget_s), 0.0

    def timed_runs() -> tuple[list[tuple[float, float]], float, float | None]:
        pace, watch, runs = PaceCheck(pace_baseline_s, threads), CpuWatch(threads), []
        while len(runs) < max(1, repeats) or (sum(map(sum, runs)) < min_measure_s and len(runs) < MAX_REPEATS):
            runs.append(timed_greedy(model, prompt, timed, device, None, new_cache))
        return runs, watch.share(), pace.ratio()

    runs, busy, ratio = _quieter(timed_runs)
    sp = _summary(runs, len(prompt), timed, kv_bytes_after(model, prompt, new_tokens, device, new_cache))
    sp.cpu_contention, sp.pace_ratio = busy, ratio
    return sp


CONTENDED_PAUSE_S = 2.0  # a moment for a short burst of other work to pass before timing again


def _quieter(timed_runs):
    """`timed_runs()` → (runs, the CPU share others took, the workload's ratio); timed once more after a pause where
    the share is over the limit or the machine ran slow, and the quieter of the two kept (by the workload where it
    was timed: it sees what the counters miss)."""
    first = timed_runs()
    if first[1] <= CONTENTION_LIMIT and not ran_slow(first[2]):
        return first
    time.sleep(CONTENDED_PAUSE_S)
    again = timed_runs()
    quieter = (again[2] < first[2]) if first[2] is not None and again[2] is not None else again[1] < first[1]
    return again if quieter else first


def _warm_up(models: list, prompt: torch.Tensor, device: str, new_cache=None) -> float:
    """Two short generations of each model: the first pays for allocations and kernels picked or compiled, which
    the timed runs must not; the second's steps set the pace (the first's made slow methods look slower still and
    cut their timed runs short). Returns the slowest model's seconds per step after the first token. A full-length
    warm-up cost a slow method a second more, and the first timed run after a short one was no slower than the rest
    (benchmarks/RESULTS.md)."""
    paces = []
    for m in models:
        timed_greedy(m, prompt, MIN_DECODE_TOKENS, device, new_cache=new_cache)
        paces.append(timed_greedy(m, prompt, MIN_DECODE_TOKENS, device, new_cache=new_cache)[1])
    return max(paces) / (MIN_DECODE_TOKENS - 1)


@torch.no_grad()
def kv_bytes_after(model, prompt: torch.Tensor, new_tokens: int, device: str, new_cache=None) -> int | None:
    """The KV cache's bytes after a generation of `new_tokens` (prompt + new_tokens - 1 positions), untimed. A plain
    cache holds each position it is given, so one prefill of that many tokens fills it as decoding would; a
    quantized one keeps a full-precision tail between quantizations, so it is decoded to that length."""
    if getattr(model, "greedy_step", None) is not None:
        return None  # llama.cpp keeps its KV cache inside its runtime, out of qadvisor's sight
    if new_cache is not None:
        sizes: list[int] = []
        timed_greedy(model, prompt, new_tokens, device, sizes, new_cache)
        return sizes[0]
    positions = len(prompt) + new_tokens - 1
    ids = prompt.repeat(-(-positions // len(prompt)))[:positions]  # which tokens does not change the cache's size
    out = _first_call(model, ids[None].to(device), None, _cache_argument(model), **_last_logits_only(model))
    return cache_bytes(_cache_of(out))


def _tokens_in_budget(most: int, step_s: float, budget_s: float) -> int:
    """As many new tokens as a step of `step_s` fits in `budget_s` (at least 4, at most `most`)."""
    return max(MIN_DECODE_TOKENS, min(most, int(budget_s / max(step_s, 1e-9))))


def _tokens_to_fill(most: int, step_s: float, share_s: float) -> int:
    """New tokens for a timed run whose steps take about `share_s` (at least MIN_TIMED_TOKENS, at most `most`);
    `most` where no share is asked for."""
    if share_s <= 0:
        return most
    return max(min(MIN_TIMED_TOKENS, most), min(most, math.ceil(share_s / max(step_s, 1e-9)) + 1))


def _summary(runs: list[tuple[float, float]], prompt_len: int, new_tokens: int, kv_bytes: int | None) -> Speed:
    """Median and spread (max - min) of (seconds to first token, seconds for the rest) over repeated runs."""
    prefill = [prompt_len / first for first, _ in runs]
    decode = [(new_tokens - 1) / rest for _, rest in runs]
    return Speed(
        prefill_tok_s=statistics.median(prefill), prefill_tok_s_spread=max(prefill) - min(prefill),
        decode_tok_s=statistics.median(decode), decode_tok_s_spread=max(decode) - min(decode),
        ttft_ms=statistics.median(first * 1000 for first, _ in runs), kv_cache_bytes=kv_bytes,
        decode_tokens=new_tokens, repeats=len(runs),
        decode_cv=statistics.stdev(decode) / statistics.mean(decode) if len(decode) > 1 else None,
    )


def side_by_side(models: list, prompt: torch.Tensor, most_tokens: int, repeats: int, device: str,
                 budget_s: float, threads: int = 1, pace_baseline_s: float | None = None) -> list[Speed]:
    """The speed of several models timed in turn in one process: each round runs every model once (forward, then
    backward the next round), so a slow minute on a shared machine lands on all of them alike and their ratios
    hold still where separate processes minutes apart would each see a different machine."""
    # the slowest model's pace sets one token count for all, so their cache lengths match
    new_tokens = _tokens_in_budget(most_tokens, _warm_up(models, prompt, device), budget_s)

    def timed_rounds():
        pace, watch, runs = PaceCheck(pace_baseline_s, threads), CpuWatch(threads), [[] for _ in models]
        for r in range(repeats):
            order = range(len(models)) if r % 2 == 0 else reversed(range(len(models)))
            for i in order:
                runs[i].append(timed_greedy(models[i], prompt, new_tokens, device))
        return runs, watch.share(), pace.ratio()

    runs, busy, ratio = _quieter(timed_rounds)
    speeds = [_summary(rs, len(prompt), new_tokens, None) for rs in runs]
    for sp in speeds:
        sp.cpu_contention, sp.pace_ratio = busy, ratio
    return speeds


def compute_dtype(model) -> str | None:
    """The dtype of the token embeddings: what the unquantized tensors, activations and KV cache use."""
    if isinstance(getattr(model, "compute_dtype", None), str):  # a non-torch runtime says it itself
        return model.compute_dtype
    try:
        return str(model.get_input_embeddings().weight.dtype).removeprefix("torch.")
    except (AttributeError, TypeError):
        return None
