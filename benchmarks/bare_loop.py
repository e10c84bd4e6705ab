"""qadvisor's timing loop against a bare one on the same model file, rounds interleaved in this one process.

    python benchmarks/bare_loop.py MODELS_DIR THREADS METHOD [METHOD ...]

MODELS_DIR is a `--keep-models` folder. For a torch method the bare loop is transformers' `generate` (greedy, exactly
the same number of new tokens, the decode clocked from the first new token by a streamer); for a GGUF file it is
llama-cpp-python's own `Llama.generate` (greedy, the prompt evaluated anew each time, as qadvisor's loop does).
Prints {method: qadvisor decode tok/s ÷ bare decode tok/s}, the median of each over the rounds (run.py reads it).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from qadvisor.core.measure.metrics import eval_windows, timed_greedy
from qadvisor.core.measure.modelio import bundled_model_dir
from qadvisor.quantizers import registry
from qadvisor.quantizers.base import TrialContext

NEW_TOKENS, PROMPT_TOKENS, ROUNDS = 32, 128, 60  # 60 rounds: a GGUF generation here is ~20 ms


class _Clock:
    """A transformers streamer that notes when each new token arrives (the first `put` is the prompt)."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def bare_torch(path: Path, prompt: torch.Tensor):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()

    def run() -> float:
        clock = _Clock()
        with torch.no_grad():
            model.generate(prompt[None], max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                           streamer=clock, pad_token_id=0)
        return (NEW_TOKENS - 1) / (clock.times[-1] - clock.times[1])

    return run


def bare_gguf(path: Path, prompt: torch.Tensor, threads: int):
    import llama_cpp

    from qadvisor.quantizers import llamacpp_amx

    gguf = path / "model.gguf"
    # built as qadvisor builds it: where llama.cpp's AMX kernels crash, neither loop can use them
    with llamacpp_amx.safe_params(llamacpp_amx.probed_level(gguf, threads, None)):
        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=PROMPT_TOKENS + NEW_TOKENS + 8,
                              n_threads=threads, n_threads_batch=threads, verbose=False)
    tokens = prompt.tolist()

    def run() -> float:
        # the prompt evaluated every time, as qadvisor does: `generate` otherwise keeps the prompt's KV cache from the
        # last round, skips the prefill and finds the weights still in the CPU's cache (3–5 % faster decode steps)
        llm.reset()
        stream = llm.generate(tokens, temp=0.0, reset=True)
        next(stream)
        first = time.perf_counter()
        for _ in range(NEW_TOKENS - 1):
            next(stream)
        rest = time.perf_counter() - first
        stream.close()
        return (NEW_TOKENS - 1) / rest

    return run


def ours(method: str, path: Path, prompt: torch.Tensor, threads: int):
    spec = registry.parse_methods(method)[0].weights
    ctx = TrialContext(threads=threads, max_tokens=PROMPT_TOKENS + NEW_TOKENS)
    model = registry.backend_for(spec).load(path, spec, ctx)
    model.eval()
    return lambda: (NEW_TOKENS - 1) / timed_greedy(model, prompt, NEW_TOKENS, "cpu")[1]


def main(models: Path, threads: int, methods: list[str]) -> dict[str, float]:
    from transformers import AutoTokenizer

    torch.set_num_threads(threads)
    bundled = bundled_model_dir()
    ids = AutoTokenizer.from_pretrained(str(bundled))((bundled / "heldout.txt").read_text()).input_ids
    prompt = eval_windows(ids, 256, 1).flatten()[:PROMPT_TOKENS]
    ratios = {}
    for method in methods:
        path = models / method
        pair = [ours(method, path, prompt, threads),
                bare_gguf(path, prompt, threads) if method.startswith("gguf-") else bare_torch(path, prompt)]
        for run in pair:
            run()  # warm-up
        speeds: list[list[float]] = [[], []]
        for r in range(ROUNDS):
            for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                speeds[i].append(pair[i]())
        ratios[method] = round(statistics.median(speeds[0]) / statistics.median(speeds[1]), 3)
        print(f"{method}: qadvisor {statistics.median(speeds[0]):.1f} tok/s, bare {statistics.median(speeds[1]):.1f}",
              file=sys.stderr)
    return ratios


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])))
