"""Speed and memory targets, measured side by side in one run (not in unit tests, which flake on shared machines).

    python benchmarks/speed_ratios.py [--methods fp32,bnb-nf4,...] [--repeats 5]

Prints, for this machine: how long `qadvisor plan` takes (target: well under 1 s), and for each method its
decode speed, prefill speed and peak memory as ratios to fp32, all measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from qadvisor.core.hardware import detect
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.runner import Run, RunRequest


def time_plan(repeats: int = 5) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "qadvisor", "plan", "--model", "Qwen2.5-72B", "--json"],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="fp32,bf16,bnb-int8,bnb-nf4,gptq-int4,hqq-int4,quanto-int8,torchao-int8,"
                    "gguf-q8_0,gguf-q4_k_m,gguf-q2_k")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    plan_s = time_plan()
    print(f"qadvisor plan --model Qwen2.5-72B: median {statistics.median(plan_s):.2f} s "
          f"(min {min(plan_s):.2f}, max {max(plan_s):.2f}; target < 1 s)")

    hardware = detect()
    methods = args.methods.split(",")
    if "fp32" not in methods:
        methods.insert(0, "fp32")
    run = Run(RunRequest(methods=methods, settings=EvalSettings(threads=hardware.physical_cores, repeats=args.repeats)),
              hardware)
    for _ in run.events():
        pass
    results = {r.method: r for r in run.results if r.status == "ok"}
    base = results.get("fp32")
    if base is None:
        sys.exit("fp32 did not run; no ratios")
    print(f"\n{run.device_label}; ratios to fp32 measured in this run (>1 = faster / bigger)")
    print(f"{'method':14s} {'decode tok/s':>13s} {'× fp32':>7s} {'prefill × fp32':>15s} {'peak RSS × fp32':>16s}")
    for name, r in results.items():
        print(f"{name:14s} {r.decode_tok_s:13.1f} {r.decode_tok_s / base.decode_tok_s:7.2f} "
              f"{r.prefill_tok_s / base.prefill_tok_s:15.2f} {r.peak_rss_bytes / base.peak_rss_bytes:16.2f}")
    for r in run.results:
        if r.status != "ok":
            print(f"{r.method:14s} {r.status}: {r.reason}")


if __name__ == "__main__":
    main()
