"""awq-int4's quantize time on the bundled model with GPTQModel's own clip search and with its sums as matmuls
(quantizers/awq_clip.py), alternating in one process so both see the same machine: `python benchmarks/awq_clip.py
[ROUNDS]`. Prints each round's seconds and the median of each."""

import statistics
import sys
import time

import torch

from qadvisor.core.measure.modelio import CALIB_FILE, bundled_model_dir, paragraphs
from qadvisor.quantizers import awq_clip, registry
from qadvisor.quantizers.base import TrialContext


def quantize_seconds(matmul: bool) -> float:
    folder = bundled_model_dir()
    spec = registry.methods()["awq-int4"]
    ctx = TrialContext(threads=torch.get_num_threads(), calib_texts=paragraphs(folder / CALIB_FILE), calibrate=True)
    awq_clip.LIBRARY_VERSIONS = ("7.6",) if matmul else ("no release",)
    started = time.perf_counter()
    registry.backend_for(spec).quantize(folder, spec, ctx)
    return time.perf_counter() - started


def main(rounds: int) -> None:
    seconds = {"library": [], "matmul": []}
    for _ in range(rounds):
        for name in seconds:
            seconds[name].append(quantize_seconds(name == "matmul"))
            print(f"{name}: {seconds[name][-1]:.1f} s", flush=True)
    for name, values in seconds.items():
        print(f"{name} clip search: median {statistics.median(values):.1f} s of {rounds}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
