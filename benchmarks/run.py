"""How fast and how steady qadvisor's runs are on this machine, measured side by side in one run.

    python benchmarks/run.py [--quick] [--json FILE]

Prints one JSON object (and writes it to FILE):
- auto_wall_s: the default `qadvisor --auto` with an empty cache (target ≤ 180 s on 2 slow cores);
  auto_rerun_wall_s: the same command again, its quantized models cached (target ≤ 60 s); auto_steps_s and
  auto_rerun_steps_s: their seconds per step over all trials (which part scales with the CPU);
- auto_vs_naive_speedup: a naive loop (a fresh `qadvisor --auto --methods M --no-cache` per method, each with an
  empty cache: the model reloaded, the reference recomputed, nothing shared) ÷ one `--auto` of the same methods
  with an empty cache (target ≥ 1.5); auto_rerun_vs_naive_speedup the same against the cached re-run;
- failed_methods: the default run's methods that failed, cold or cached (the wall times hold only where none did);
- harness_overhead_ratio: qadvisor's decode tok/s ÷ a bare loop on the same model file (transformers `generate`
  for fp32, llama-cpp-python's own `generate` for GGUF), rounds interleaved in one process (target ≥ 0.97);
- fastest_vs_fp32_decode (target ≥ 3), decode_cv (largest over the methods, target ≤ 0.05), and per method
  roofline_fraction: measured decode ÷ (measured copy bandwidth ÷ weight bytes read per token);
- projection_error: per method and size from benchmarks/projection.py (skipped by --quick: ~16 min);
- machine_noise_cv: before and after all the above, the CV of a fixed job timed back to back with qadvisor not
  running (benchmarks/machine_noise.py): how quiet the machine was, which the decode_cv target presumes;
  harness_cv_floor: the other way round, the decode CV qadvisor's own measuring reports for a stand-in model whose
  every step is a fixed 5 ms sleep (no arithmetic to slow down): what the protocol itself adds to a CV.
Every figure comes from this run, on the machine in `machine`. --quick runs a shorter naive comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUICK_METHODS = "fp32,bnb-nf4,gptq-int4,gguf-q8_0,gguf-q4_k_m"
HARNESS_METHODS = ("fp32", "gguf-q8_0")
TARGETS = {"auto_wall_s": ("<=", 180), "auto_rerun_wall_s": ("<=", 60), "auto_vs_naive_speedup": (">=", 1.5),
           "harness_overhead_ratio": (">=", 0.97), "fastest_vs_fp32_decode": (">=", 3), "decode_cv": ("<=", 0.05)}


def auto(cache: Path, *args: str) -> tuple[float, dict]:
    """One `qadvisor --auto` in a fresh process with `cache` as its cache: (wall seconds, its export)."""
    cache.mkdir(parents=True, exist_ok=True)
    export = cache / f"run-{time.monotonic_ns()}.json"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "qadvisor", "--auto", "--export", str(export), *args],
                          env={**os.environ, "QADVISOR_CACHE": str(cache)}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"qadvisor --auto {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    print(f"  --auto {' '.join(args)}: {wall:.1f} s", file=sys.stderr, flush=True)
    return wall, json.loads(export.read_text())


def naive(methods: str, tmp: Path) -> float:
    """Each method on its own, as a script without qadvisor's run would: nothing shared, nothing cached."""
    total = 0.0
    for i, method in enumerate(methods.split(",")):
        total += auto(tmp / f"naive-{i}", "--methods", method, "--no-cache")[0]
    return total


def harness(models: Path, threads: int) -> dict[str, float]:
    """qadvisor's decode ÷ a bare loop's, per method, timed in one fresh process (benchmarks/bare_loop.py)."""
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("bare_loop.py")), str(models), str(threads),
                          *HARNESS_METHODS], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bare_loop.py failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def machine_noise(threads: int) -> float:
    """The CV of a fixed job timed back to back in a fresh process (benchmarks/machine_noise.py)."""
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("machine_noise.py")), str(threads)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"machine_noise.py failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)["probe_cv"]


FLOOR_STEP_S = 0.005  # a GGUF decode step of the bundled model takes 1-2 ms here, an fp32 one 12-15 ms


class FixedStep:
    """A stand-in that picks its own greedy token, as llama.cpp does, after a fixed sleep: what
    qadvisor's timing reports for it is the harness's spread (timer, Python between steps), not the CPU's."""

    def greedy_step(self, tokens: list[int], fresh: bool = False) -> int:
        time.sleep(FLOOR_STEP_S)
        return 0


def harness_cv_floor() -> float:
    import torch

    from qadvisor.core.measure.metrics import speed

    return round(speed(FixedStep(), torch.zeros(128, dtype=torch.long), 32, 3, "cpu", min_measure_s=1.0).decode_cv, 4)


def roofline(export: dict) -> tuple[float, dict[str, float]]:
    from qadvisor.core.plan.bandwidth import probe_bandwidth_gb_s

    gb_s = probe_bandwidth_gb_s()
    return gb_s, {r["method"]: round(r["decode_tok_s"] * r["weights_mem_bytes"] / (gb_s * 1e9), 3)
                  for r in export["results"] if r["status"] == "ok" and r.get("weights_mem_bytes")}


def projection_errors(tmp: Path) -> dict | None:
    path = tmp / "projection.json"
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("projection.py")), "--json", str(path)])
    return json.loads(path.read_text()) if done.returncode == 0 and path.is_file() else None


def steps_s(export: dict) -> dict[str, float]:
    """Seconds per step over all trials of a run (start, quantize, evaluate, benchmark, ...): on another machine,
    which part scaled with its CPU and which did not (the timed generations)."""
    sums: dict[str, float] = {}
    for r in export["results"]:
        for name, s in {"start": r.get("start_s") or 0.0, **(r.get("step_s") or {})}.items():
            sums[name] = sums.get(name, 0.0) + s
    return {name: round(s, 1) for name, s in sums.items()}


def verdicts(figures: dict) -> dict[str, bool]:
    met = {}
    for name, (op, bound) in TARGETS.items():
        value = figures.get(name)
        if value is not None:
            met[name] = value <= bound if op == "<=" else value >= bound
    return met


def measure(quick: bool, tmp: Path) -> dict:
    from qadvisor.core.hardware import detect

    hw = detect(with_backends=False)
    kept = tmp / "models"
    noise_before = machine_noise(hw.physical_cores)
    cold_s, cold = auto(tmp / "default", "--keep-models", str(kept))
    warm_s, warm = auto(tmp / "default")
    methods = QUICK_METHODS if quick else ",".join(r["method"] for r in cold["results"])
    same_s, same_warm_s = (auto(tmp / "same", "--methods", methods)[0], auto(tmp / "same", "--methods", methods)[0]) \
        if quick else (cold_s, warm_s)
    naive_s = naive(methods, tmp)
    ok = {r["method"]: r for r in cold["results"] if r["status"] == "ok"}
    gb_s, fractions = roofline(cold)
    overhead = harness(kept, hw.physical_cores)
    figures = {
        "machine": {"cpu": hw.cpu_model, "cores": hw.physical_cores, "isa": hw.isa_flags, "torch": hw.torch},
        # a failed trial is a short one: the wall times below hold only where this is empty
        "failed_methods": sorted({r["method"] for run in (cold, warm) for r in run["results"] if r["status"] != "ok"}),
        "auto_wall_s": round(cold_s, 1), "auto_rerun_wall_s": round(warm_s, 1),
        "auto_steps_s": steps_s(cold), "auto_rerun_steps_s": steps_s(warm),
        "auto_vs_naive_speedup": round(naive_s / same_s, 2), "auto_rerun_vs_naive_speedup": round(naive_s / same_warm_s, 2),
        "naive_methods": methods, "naive_wall_s": round(naive_s, 1), "auto_same_methods_wall_s": round(same_s, 1),
        "harness_overhead_ratio": min(overhead.values()), "harness_overhead_by_method": overhead,
        "fastest_vs_fp32_decode": round(max(r["decode_tok_s"] for r in ok.values()) / ok["fp32"]["decode_tok_s"], 2),
        "decode_cv": round(max(r["decode_cv"] for r in ok.values()), 4),
        "decode_cv_by_method": {m: round(r["decode_cv"], 4) for m, r in ok.items()},
        "decode_cv_rerun": round(max(r["decode_cv"] for r in warm["results"] if r["status"] == "ok"), 4),
        "bandwidth_gb_s": round(gb_s, 1), "roofline_fraction": fractions,
        "projection_error": None if quick else projection_errors(tmp),
        "machine_noise_cv": {"before": noise_before, "after": machine_noise(hw.physical_cores)},
        "harness_cv_floor": harness_cv_floor(),
    }
    figures["targets"] = {k: f"{op} {bound}" for k, (op, bound) in TARGETS.items()}
    figures["met"] = verdicts(figures)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a shorter naive comparison, no projection check")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qadvisor-bench-") as tmp:
        figures = measure(args.quick, Path(tmp))
    figures["benchmark_wall_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
