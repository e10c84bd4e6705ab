"""Prove the slice projection: where the whole model fits here, measure it end to end and compare.

    python benchmarks/projection.py [--models Qwen2.5-0.5B,Qwen2.5-1.5B] [--methods bnb-nf4,gguf-q8_0,gguf-q4_k_m]
                                    [--json FILE]
    python benchmarks/projection.py --models Qwen3-30B-A3B:6layers --methods gguf-q8_0,gguf-q4_k_m   # an MoE

A model too large to build here is measured at a reduced depth (`NAME:Nlayers`: its real layers, fewer of them).

Per model and method: decode and prefill tok/s projected from two slices (`qadvisor plan --measure`) next to
the same method measured on the whole random-weight model (`synthetic:…`), all three quantized by the real backend
and timed side by side in one process, rounds interleaved, so that the shared machine's swings between
processes do not enter the comparison. Targets: decode within 15 %, prefill
within 25 %. Prints a Markdown table for benchmarks/RESULTS.md and, with --json, the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


from qadvisor.core.hardware import detect
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.modelio import build_synthetic, check_synthetic
from qadvisor.core.paths import default_cache_dir
from qadvisor.schemas.events import Result
from qadvisor.core.plan.slices import DECODE_BUDGET_S, DECODE_TOKENS, REPEATS, SliceMeasurement

DECODE_BOUND, PREFILL_BOUND = 0.15, 0.25


def _drain(events) -> None:
    for event in events:
        if isinstance(event, Result):
            r = event.result
            print(f"  {r.method}: {r.status} decode {r.decode_tok_s} prefill {r.prefill_tok_s} "
                  f"[{r.total_s or 0:.0f}s] {r.reason}", file=sys.stderr, flush=True)


def measure(model: str, methods: list[str], settings: EvalSettings, hardware) -> list[dict]:
    """Per method: both slices and the whole model, quantized by the real backend, timed side by side in one
    process (the product's own path, with the whole model added), and the projection from the slices."""
    arch = check_synthetic(model)  # a named size, or fewer of its layers (NAME:Nlayers)
    whole = build_synthetic(arch, default_cache_dir())
    sliced = SliceMeasurement(arch, methods, hardware, settings, default_cache_dir(), whole=whole)
    _drain(sliced.events())
    rows = []
    for method, results in sliced.results.items():
        r = results[-1] if len(results) == 3 else None
        p = sliced.projections.get(method)
        row = {"model": arch.name, "method": method, "slices": list(sliced.depths), "layers": arch.num_hidden_layers,
               "measured_decode_tok_s": r.decode_tok_s if r else None,
               "measured_prefill_tok_s": r.prefill_tok_s if r else None,
               "slice_decode_tok_s": [x.decode_tok_s for x in results[:2]],
               "decode_tokens": r.decode_tokens if r else None,
               "projected_decode_tok_s": p.decode_tok_s if p else None,
               "projected_prefill_tok_s": p.prefill_tok_s if p else None}
        for kind in ("decode", "prefill"):
            got, want = row[f"projected_{kind}_tok_s"], row[f"measured_{kind}_tok_s"]
            row[f"{kind}_error"] = got / want - 1 if got and want else None
        rows.append(row)
    return rows


def markdown(rows: list[dict], device: str) -> str:
    lines = [f"Measured on {device}; both slices and the whole model timed side by side in one process per method, "
             f"{REPEATS} rounds after a warm-up, up to {DECODE_TOKENS} decode tokens (as many as the slowest decodes "
             f"in {DECODE_BUDGET_S:g} s), prompt 128.", "",
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
