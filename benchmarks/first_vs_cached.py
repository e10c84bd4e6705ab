"""A trial measures the file, not the process's history: decode of a run that quantizes (--no-cache) against the
cached run that follows, per method, on this machine. Target: within 15 % for every method on a quiet machine.

    python benchmarks/first_vs_cached.py [--methods fp32,gptq-int4,...] [--rounds 2]

Each round runs `qadvisor --auto --no-cache` and then `qadvisor --auto` with the same methods; it prints each
method's decode in both and their ratio, with the CPU contention each figure was timed under.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from qadvisor.quantizers.registry import DEFAULT_METHODS

TARGET = 0.15


def run(methods: str, out: Path, fresh: bool) -> dict:
    args = [sys.executable, "-m", "qadvisor", "--auto", "--methods", methods, "--export", str(out)]
    subprocess.run(args + (["--no-cache"] if fresh else []), check=True, capture_output=True)
    return {r["method"]: r for r in json.loads(out.read_text())["results"] if r["status"] == "ok"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    print(subprocess.run([sys.executable, "-m", "qadvisor", "hardware"], capture_output=True, text=True).stdout
          .splitlines()[0])
    misses = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            first = run(args.methods, Path(tmp) / "first.json", fresh=True)
            cached = run(args.methods, Path(tmp) / "cached.json", fresh=False)
            print(f"round {n + 1}: method, decode tok/s quantized now → cached, ratio, CPU contention now / cached")
            for method, a in first.items():
                b = cached.get(method)
                if b is None:
                    continue
                ratio = a["decode_tok_s"] / b["decode_tok_s"]
                ok = abs(ratio - 1) <= TARGET
                misses += not ok
                print(f"  {method:14s} {a['decode_tok_s']:9.1f} → {b['decode_tok_s']:9.1f}  {ratio:5.2f} "
                      f"{'✓' if ok else '✗'}  {a.get('cpu_contention') or 0:.2f} / {b.get('cpu_contention') or 0:.2f}")
    print(f"{misses} outside ±{100 * TARGET:.0f} %")


if __name__ == "__main__":
    main()
