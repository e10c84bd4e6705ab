"""How steady this machine is right now, apart from qadvisor: one fixed job timed back to back.

    python benchmarks/machine_noise.py THREADS

Prints {"probe_cv": ..., "probe_per_s": [...]}: the coefficient of variation (stdev ÷ mean) of ROUNDS timings of a
decode-shaped fp32 matrix-vector product (1 × 896 by 896 × 4864, a Qwen2.5-0.5B MLP projection) on THREADS
threads, each round PROBE_S seconds long, after a warm-up. A decode CV target ("≤ 0.05 on a quiet machine") can only
be met where this is well under it: on a host shared with others the job itself spreads, and so does every figure.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch

ROUNDS = 12
PROBE_S = 0.15
SHAPE = (896, 4864)


def products_per_s(weight, row) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < PROBE_S:
        torch.mm(row, weight)
        count += 1
    return count / elapsed


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]))
    weight, row = torch.ones(SHAPE), torch.ones(1, SHAPE[0])  # the values do not change the time
    products_per_s(weight, row)  # warm-up
    rounds = [products_per_s(weight, row) for _ in range(ROUNDS)]
    print(json.dumps({"probe_cv": round(statistics.stdev(rounds) / statistics.mean(rounds), 4),
                      "probe_per_s": [round(r) for r in rounds]}))


if __name__ == "__main__":
    main()
