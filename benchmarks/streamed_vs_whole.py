"""Streaming measures what a whole-model trial measures, in a fraction of the memory.

    python benchmarks/streamed_vs_whole.py equivalence [--methods bnb-nf4,...] [--model DIR]
    python benchmarks/streamed_vs_whole.py memory [--model Qwen2.5-7B|Qwen3-30B-A3B:8layers] [--methods bnb-nf4,…]

`equivalence`: on the bundled model (or the model folder given), each method's PPL, KL and top-1 from `qadvisor --auto` (whole-model trials) and
from core.measure.streamed, side by side. Targets: PPL within 0.5 %, KL within 10 %, for every method (GGUF too: the
streamed path rounds each matmul's input as llama.cpp's CPU runtime does; its F16 KV cache is left out).

`memory`: a synthetic checkpoint (random bf16 weights, built once in the cache) larger than this machine's memory
would hold in fp32, streamed in a child process over 512 scored tokens: its peak RSS (target ≤ 6 GiB), seconds per
layer per method, and from them the time a Qwen2.5-72B would take here (an estimate: seconds per layer scale with the
layer's weights).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT = "bnb-nf4,bnb-int8,bnb-fp4,gptq-int8,gptq-int4,gptq-int3,gptq-int2,hqq-int4,hqq-int3,hqq-int2,quanto-int8," \
          "quanto-int4,quanto-int2,torchao-int8,gguf-q8_0,gguf-q6_k,gguf-q4_k_m,gguf-q3_k_m,gguf-q2_k"
PPL_TARGET, KL_TARGET, RSS_TARGET = 0.005, 0.10, 6 * 2**30


def machine() -> str:
    out = subprocess.run([sys.executable, "-m", "qadvisor", "hardware"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def streamed(model_dir: Path, methods: list[str], window: int, windows: int, threads: int):
    from qadvisor.core.measure import modelio
    from qadvisor.core.measure.jobs import EvalSettings
    from qadvisor.core.measure.streamed import StreamJob

    text, _ = modelio.text_for(model_dir, modelio.EVAL_FILE)
    calib, _ = modelio.text_for(model_dir, modelio.CALIB_FILE)
    job = StreamJob(model_dir, methods, text, EvalSettings(window=window, windows=windows, threads=threads),
                    calib_text=calib)
    for event in job.events():
        print(f"  {event.method}: {event.message}", end="\r", file=sys.stderr)
    return job.result()


def equivalence(methods: list[str], threads: int, model: Path | None = None) -> int:
    from qadvisor.core.measure import modelio
    from qadvisor.core.measure.modelio import bundled_model_dir

    folder = model or bundled_model_dir()
    texts = [modelio.text_for(folder, name)[0] for name in (modelio.EVAL_FILE, modelio.CALIB_FILE)]
    with tempfile.TemporaryDirectory() as tmp:  # both sides read the same texts: the folder's own, else the bundled
        out = Path(tmp) / "whole.json"
        subprocess.run([sys.executable, "-m", "qadvisor", "--auto", "--model", str(folder), "--methods",
                        ",".join(["fp32", *methods]), "--eval-text", str(texts[0]), "--calib-text", str(texts[1]),
                        "--export", str(out)], check=True, capture_output=True)
        whole = {r["method"]: r for r in json.loads(out.read_text())["results"] if r["status"] == "ok"}
    s = streamed(folder, methods, 256, 8, threads)
    print(f"{'method':14s} {'PPL whole':>10s} {'streamed':>10s} {'Δ':>7s}   {'KL whole':>9s} {'streamed':>9s} {'Δ':>7s}"
          f"   {'top-1 whole':>11s} {'streamed':>8s}")
    misses = 0
    for m in s.methods:
        w = whole.get(m.method)
        if w is None or m.ppl is None or w["kl_mean"] is None:  # random weights marked synthetic are not scored
            print(f"{m.method:14s} not measured ({m.error or 'whole-model trial failed'})")
            misses += 1
            continue
        dp, dk = m.ppl / w["ppl"] - 1, m.kl_mean / w["kl_mean"] - 1
        ok = abs(dp) <= PPL_TARGET and abs(dk) <= KL_TARGET
        misses += not ok
        print(f"{m.method:14s} {w['ppl']:10.3f} {m.ppl:10.3f} {100 * dp:+6.2f}%   {w['kl_mean']:9.2e} "
              f"{m.kl_mean:9.2e} {100 * dk:+6.1f}%   {w['top1_agreement']:11.4f} {m.top1_agreement:8.4f}"
              + ("" if ok else "   MISS"))
    print(f"reference PPL streamed {s.ref_ppl:.3f}; {s.tokens} tokens; {len(s.methods) - misses} of {len(s.methods)} "
          "within target")
    return misses


def memory(model: str, methods: list[str], threads: int) -> int:
    from qadvisor.core import architectures
    from qadvisor.core.measure.modelio import build_synthetic, check_synthetic
    from qadvisor.core.paths import default_cache_dir

    arch = check_synthetic(model)  # a named size, or its first layers (NAME:Nlayers): the real layers, fewer
    print(f"building synthetic:{arch.name} (bf16, {2 * architectures.param_count(arch) / 2**30:.1f} GiB; once, cached)",
          file=sys.stderr)
    folder = build_synthetic(arch, default_cache_dir())
    code = ("import json,sys; from pathlib import Path; sys.path.insert(0, 'benchmarks'); "
            "from streamed_vs_whole import streamed; "
            f"s = streamed(Path({str(folder)!r}), {methods!r}, 257, 2, {threads}); print(s.model_dump_json())")
    done = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True)
    s = json.loads(done.stdout.strip().splitlines()[-1])
    # the whole model a reduced depth stands for (NAME:Nlayers), else the 72B the product is aimed at
    big = architectures.resolve_architecture(model.split(":")[0] if ":" in model else "Qwen2.5-72B")
    scale = (architectures.param_count(big) / big.num_hidden_layers) / (architectures.param_count(arch) / arch.num_hidden_layers)
    per_layer = {"fp32": s["ref_seconds_per_layer"], **{m["method"]: m["seconds_per_layer"] for m in s["methods"]}}
    per_layer.update({f"{m['method']}'s sensitivity pass": m["mix"]["seconds_per_layer"] for m in s["methods"]
                      if m.get("mix")})  # a GGUF mix measures each matrix before it streams its accuracy
    total = sum(v for v in per_layer.values() if v) * scale * big.num_hidden_layers
    print(f"synthetic:{arch.name}: {arch.num_hidden_layers} layers, fp32 weights "
          f"{4 * architectures.param_count(arch) / 2**30:.1f} GiB; {s['tokens']} tokens; peak RSS "
          f"{s['peak_rss_bytes'] / 2**30:.2f} GiB (target ≤ {RSS_TARGET / 2**30:.0f})")
    print("seconds per layer: " + ", ".join(f"{k} {v:.1f}" for k, v in per_layer.items() if v))
    for m in s["methods"]:
        if m["error"]:
            print(f"{m['method']}: failed: {m['error']}")
    print(f"{big.name} here (estimate: seconds per layer × {scale:.1f}, its layer's weights ÷ this one's, "
          f"× {big.num_hidden_layers} layers, the head left out): {total / 3600:.1f} h for these methods")
    return int(s["peak_rss_bytes"] > RSS_TARGET or any(m["error"] for m in s["methods"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["equivalence", "memory"])
    ap.add_argument("--methods")
    ap.add_argument("--model", help="equivalence: a model folder (default: the bundled model); memory: a size "
                                    "(default Qwen2.5-7B)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(machine())
    if args.what == "equivalence":
        return equivalence((args.methods or DEFAULT).split(","), args.threads, Path(args.model) if args.model else None)
    return memory(args.model or "Qwen2.5-7B", (args.methods or "bnb-nf4,gguf-q4_k_m").split(","), args.threads)


if __name__ == "__main__":
    sys.exit(main())
