"""Prove the slice projection: where the whole model fits here, measure it end to end and compare.

    python benchmarks/projection.py [--models Qwen2.5-0.5B,Qwen2.5-1.5B] [--methods bnb-nf4,gguf-q8_0,gguf-q4_k_m]
                                    [--json FILE]

Per model and method: decode and prefill tok/s projected from two slices (`qadvisor plan --measure`) next to
the same method measured on the whole random-weight model (`qadvisor --auto --model synthetic:…`), with the
same prompt, decode length and repeats, one after the other in this run. Targets: decode within 15 %, prefill
within 25 %. Prints a Markdown table for benchmarks/RESULTS.md and, with --json, the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from qadvisor.core import planner
from qadvisor.core.hardware import detect
from qadvisor.core.jobs import EvalSettings
from qadvisor.core.runner import Run, RunRequest, default_cache_dir
from qadvisor.core.slices import DECODE_TOKENS, REPEATS, SliceMeasurement

DECODE_BOUND, PREFILL_BOUND = 0.15, 0.25


def _drain(events, label: str) -> None:
    for event in events:
        if getattr(event, "kind", "") == "result":
            r = event.result
            print(f"  {label} {r.method}: {r.status} decode {r.decode_tok_s} prefill {r.prefill_tok_s} "
                  f"[{r.total_s or 0:.0f}s] {r.reason}", file=sys.stderr, flush=True)


def measure(model: str, methods: list[str], settings: EvalSettings, hardware) -> list[dict]:
    arch = planner.resolve_architecture(model)
    sliced = SliceMeasurement(arch, methods, hardware, settings, default_cache_dir())
    _drain(sliced.events(), f"slices {sliced.depths}")
    whole = Run(RunRequest(model_dir=f"synthetic:{arch.name}", methods=methods,
                           settings=sliced.settings.model_copy(update={"window": 256, "windows": 1})), hardware)
    _drain(whole.events(), "whole")
    rows = []
    for r in whole.results:
        p = sliced.projections.get(r.method)
        row = {"model": arch.name, "method": r.method, "slices": list(sliced.depths), "layers": arch.num_hidden_layers,
               "measured_decode_tok_s": r.decode_tok_s, "measured_prefill_tok_s": r.prefill_tok_s,
               "projected_decode_tok_s": p.decode_tok_s if p else None,
               "projected_prefill_tok_s": p.prefill_tok_s if p else None}
        for kind in ("decode", "prefill"):
            got, want = row[f"projected_{kind}_tok_s"], row[f"measured_{kind}_tok_s"]
            row[f"{kind}_error"] = got / want - 1 if got and want else None
        rows.append(row)
    return rows


def markdown(rows: list[dict], device: str) -> str:
    lines = [f"Measured on {device}; slices and whole model one after the other in one run, "
             f"{DECODE_TOKENS} decode tokens, {REPEATS} repeats after a warm-up, prompt 128.", "",
             "| model | method | slices | decode projected | decode measured | error | prefill projected | "
             "prefill measured | error |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def pct(x, bound):
            return "—" if x is None else f"{100 * x:+.1f} %" + ("" if abs(x) <= bound else " ✗")

        def num(x):
            return "—" if x is None else f"{x:,.1f}"

        lines.append(f"| {r['model']} | {r['method']} | {r['slices'][0]} & {r['slices'][1]} of {r['layers']} | "
                     f"{num(r['projected_decode_tok_s'])} | {num(r['measured_decode_tok_s'])} | "
                     f"{pct(r['decode_error'], DECODE_BOUND)} | {num(r['projected_prefill_tok_s'])} | "
                     f"{num(r['measured_prefill_tok_s'])} | {pct(r['prefill_error'], PREFILL_BOUND)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="Qwen2.5-0.5B,Qwen2.5-1.5B")
    ap.add_argument("--methods", default="bnb-nf4,gguf-q8_0,gguf-q4_k_m")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    hardware = detect()
    settings = EvalSettings(threads=hardware.physical_cores)
    started, rows = time.perf_counter(), []
    for model in args.models.split(","):
        rows += measure(model, args.methods.split(","), settings, hardware)
    device = hardware.label("cpu", settings.threads)
    print(markdown(rows, device))
    print(f"\n({time.perf_counter() - started:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"device": device, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
