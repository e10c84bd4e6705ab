"""Entry point: the TUI by default, `--auto` headless, and `hardware` / `methods`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qadvisor.errors import UserError


def _auto_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--auto", action="store_true", help="measure without the TUI, print a table, write the export")
    parser.add_argument("--load", type=Path, help="open a saved run in the TUI (its recommendation screen)")
    parser.add_argument("--model", help="a local Qwen model directory (Qwen2/2.5, Qwen3, Qwen3-MoE, Qwen3-Next, "
                        "Qwen3.5/3.6), or synthetic:Qwen3-0.6B (random weights at the real shape, to check the planner; "
                        "synthetic:Qwen3-30B-A3B:4layers keeps its first 4 layers), or quantized checkpoints (GPTQ, AWQ or "
                        "bitsandbytes folders, .gguf files or OWNER/REPO-GGUF:Q4_K_M; comma-separated) measured as "
                        "shipped; a Hugging Face repo id for any of them; default: the bundled model")
    parser.add_argument("--reference", metavar="DIR", help="with --model CHECKPOINT (a quantized folder or a .gguf "
                        "file, measured as shipped): the unquantized model it was made from, for its accuracy (a folder, a "
                        "repo id, or an F16/BF16/F32 GGUF such as OWNER/REPO-GGUF:FP16); without it, size and speed only")
    parser.add_argument("--methods", help="comma-separated methods (see `qadvisor methods`); default: a spread of twelve from seven backends")
    parser.add_argument("--export", type=Path, help="write the run as JSON here")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where trials run (default: cuda if present)")
    parser.add_argument("--threads", type=int, help="CPU threads per trial (default: physical cores)")
    # defaults live in app.options.RunOptions, the one place both faces read them from
    parser.add_argument("--repeats", type=int, help="timed generations after one warm-up, at least (more until they add "
                        f"up to {_min_measure_s():g} s; default {_default('repeats')})")
    parser.add_argument("--decode-tokens", type=int,
                        help=f"new tokens per timed generation (default {_default('decode_tokens')})")
    parser.add_argument("--prompt-tokens", type=int,
                        help=f"prompt length for prefill and TTFT (default {_default('prompt_tokens')})")
    parser.add_argument("--eval-text", type=Path, help="your own text for the accuracy metrics (default: the bundled model's held-out split; "
                        "wikitext-2's test split for another model, from the Hugging Face cache or the hub)")
    parser.add_argument("--calib-text", type=Path, help="calibration text for GPTQ (paragraphs split by blank lines)")
    parser.add_argument("--keep-models", type=Path, metavar="DIR", help="keep each quantized model under DIR")
    parser.add_argument("--no-cache", action="store_true", help="compute the reference and quantize every method again "
                        "(the cache is refreshed); speed and accuracy are measured in every run either way")
    _priority_args(parser)
    parser.add_argument("--plan-for", metavar="MODEL", help="also advise for e.g. Qwen2.5-72B: size from the planner, speed "
                        "projected from slices of it measured here, accuracy streamed on its weights when MODEL is a "
                        "folder with them, else published at its size")
    parser.add_argument("--stream", action="store_true", help="with --model DIR: measure DIR's accuracy one decoder "
                        "layer at a time (any size; taken on its own when DIR would not fit in memory); its size and "
                        "speed come from the planner and slices, the whole-model trials run on the bundled model")
    parser.add_argument("--target", help="deployment target for --plan-for (default: this machine)")
    parser.add_argument("--cluster", metavar="local|HOST:PORT", help="measure every method on every node of a Ray "
                        "cluster (local: start one here); advice per hardware kind. Needs pip install -e '.[cluster]'")
    parser.add_argument("--pin", metavar="METHOD=RESOURCE[,…]", help="with --cluster: run METHOD only on the nodes "
                        "that have that Ray resource (ray start --resources '{\"H100\": 1}'), e.g. gptq-int4=H100")
    parser.add_argument("--target-methods", help="methods timed on slices of the --plan-for model (default: the "
                        "measured ones among bnb-nf4, quanto-int4, torchao-int8 and GGUF Q8_0 / Q4_K_M / Q2_K)")


def _default(option: str):
    from qadvisor.app.options import default

    return default(option)


def _min_measure_s() -> float:
    from qadvisor.app.options import MIN_MEASURE_S

    return MIN_MEASURE_S


def _priority_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="preset (storage-first, latency-first, accuracy-first, balanced) or a JSON file")
    parser.add_argument("--priorities", help="weights, e.g. storage=3,latency=1,accuracy=2 (override the profile)")
    from qadvisor.schemas.limits import LIMITS

    for row in LIMITS:
        parser.add_argument(f"--{row.option.replace('_', '-')}", type=None if row.size else float, help=row.help)
    parser.add_argument("--accept-unverified-accuracy", action="store_true",
                        help="--plan-for: also pick methods whose loss at the planned model's size nobody published, on the "
                             "accuracy measured on the small model (which quantization barely hurts)")
    parser.add_argument("--report", type=Path, help="also write a Markdown report here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qadvisor", description="Measure real quantizers on a Qwen model and choose one.")
    _auto_parser(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    hw = sub.add_parser("hardware", help="what this machine is and which backends can run here")
    hw.add_argument("--json", action="store_true")
    methods = sub.add_parser("methods", help="every quantization method and whether it can run here")
    methods.add_argument("--json", action="store_true")
    advise = sub.add_parser("advise", help="recommend again from a saved run, without measuring")
    advise.add_argument("--from", dest="source", type=Path, required=True, help="an export written by --auto")
    advise.add_argument("--export", type=Path, help="write the export with the new priorities and recommendation")
    _priority_args(advise)
    compare = sub.add_parser("compare", help="two saved runs side by side (two machines, two models), or the first "
                             "two hardware kinds of one --cluster run")
    compare.add_argument("first", type=Path)
    compare.add_argument("second", type=Path, nargs="?")
    sub.add_parser("schema", help="print the JSON Schema of the export")
    doctor = sub.add_parser("doctor", help="does each backend quantize and decode here (or only with a fallback)? "
                            "About two minutes on 2 cores, most of it AWQ's calibrated search")
    doctor.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    doctor.add_argument("--backends", help="only these backends, comma-separated (default: every one; "
                                           "`qadvisor methods` names them)")
    doctor.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                        help="where the backends run (default cpu; auto: cuda when torch sees a GPU)")
    cache = sub.add_parser("cache", help="what qadvisor keeps between runs ($QADVISOR_CACHE or ~/.cache/qadvisor)")
    cache.add_argument("--clear", choices=("artifacts", "reference", "synthetic", "probes", "checkpoints",
                                            "gguf-references", "runs", "logs", "history", "all"),
                       help="remove that part (all: every part a run recomputes; saved runs and the decode history "
                            "only by name)")
    plan = sub.add_parser("plan", help="estimate size, memory fit and a decode bound per method for any Qwen size")
    plan.add_argument("--model", default="Qwen2.5-72B", help="a named size (Qwen2.5-72B, Qwen3-32B, Qwen3-30B-A3B, "
                      "Qwen3.5-27B, …: see the error for the list), or a Qwen config.json / directory")
    plan.add_argument("--context", type=int, default=2048, help="tokens held in the KV cache (default 2048)")
    plan.add_argument("--batch", type=int, default=1)
    plan.add_argument("--prompt-tokens", type=int, help="prompt length for the prefill activations (default 128)")
    plan.add_argument("--target", default="this", help="this (default), or a GPU: " + ", ".join(_gpu_names()) + " (optionally xN)")
    plan.add_argument("--methods", help="comma-separated planner methods (default: all)")
    plan.add_argument("--json", action="store_true")
    plan.add_argument("--explain", action="store_true", help="print the formula behind every column")
    plan.add_argument("--measure", action="store_true", help="time slices of the model (a few real-shape layers, the "
                      "real backends) on this machine and project the whole model's prefill and decode speed")
    plan.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where --measure times the slices")
    plan.add_argument("--threads", type=int, help="CPU threads for --measure (default: physical cores)")
    return parser


def _gpu_names() -> list[str]:
    from qadvisor.core.plan.planner import gpu_table

    return list(gpu_table())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_environment()
        if args.command == "hardware":
            return cmd_hardware(args)
        if args.command == "methods":
            return cmd_methods(args)
        if args.command == "plan":
            return cmd_plan(args)
        if args.command == "advise":
            return cmd_advise(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "schema":
            return cmd_schema(args)
        if args.command == "cache":
            return cmd_cache(args)
        if args.command == "doctor":
            return cmd_doctor(args)
        if args.auto:
            return cmd_auto(args)
        return cmd_tui(args)
    except UserError as exc:
        print(f"qadvisor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qadvisor: interrupted", file=sys.stderr)
        return 130


def _check_environment() -> None:
    """What qadvisor reads from the environment, checked before any command does anything."""
    from qadvisor.core import hardware
    from qadvisor.core.measure import artifacts

    artifacts.check_environment()
    hardware.check_environment()


def cmd_hardware(args) -> int:
    from qadvisor.console import print_hardware
    from qadvisor.core.hardware import detect

    info = detect()
    if args.json:
        print(info.model_dump_json(indent=2))
    else:
        print_hardware(info)
    return 0


def cmd_methods(args) -> int:
    from qadvisor.app.views import as_shipped_rows, method_rows
    from qadvisor.console import print_as_shipped, print_methods
    from qadvisor.core.hardware import backend_findings, detect

    info = detect(with_backends=False)
    rows = method_rows(info.cuda is not None, backend_findings())
    if args.json:
        print(json.dumps({"methods": rows, "as_shipped": as_shipped_rows()}, indent=2))
    else:
        print_methods(rows)
        print_as_shipped(as_shipped_rows())
    return 0


def priorities_from_args(args, default="balanced"):
    """The chosen profile (else `default`: a preset name or saved priorities) with any weights and limits given on
    the command line laid over it."""
    from qadvisor.app.options import priority_options
    from qadvisor.schemas.limits import LIMITS
    from qadvisor.schemas.priorities import parse_weights

    return priority_options(profile=args.profile or default, **parse_weights(args.priorities or ""),
                            **{row.option: getattr(args, row.option) for row in LIMITS},
                            accept_unverified_accuracy=getattr(args, "accept_unverified_accuracy", False)).priorities()


def cmd_advise(args) -> int:
    from qadvisor.app.advice import readvise
    from qadvisor.app.report import write_run
    from qadvisor.console import print_recommendations
    from qadvisor.schemas.export import load_export
    from qadvisor.schemas.jsonfile import check_output_paths

    export = load_export(args.source)
    check_output_paths(args.export, args.report)
    # the run's own weights and limits stand unless the command line overrides them
    priorities = priorities_from_args(args, default=export.priorities or "balanced")
    readvise(export, priorities)
    print_recommendations(export)
    write_run(export, args.export, args.report)
    return 0


def cmd_doctor(args) -> int:
    from qadvisor.app.doctor import doctor_backends, run_doctor
    from qadvisor.app.views import doctor_view
    from qadvisor.console import print_view
    from qadvisor.core.hardware import detect, where_to_run

    info = detect(with_backends=False)
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    only = doctor_backends(args.backends)
    device, threads = where_to_run(args.device, args.threads, info)
    print(f"qadvisor doctor: each installed backend quantizes and decodes the bundled model in its own processes "
          f"({device}, {threads} threads)", flush=True)
    report = run_doctor(info, threads, lambda line: print(f"  {line}", flush=True), device, only)
    print_view(doctor_view(report), boxed=True)
    return 0


def cmd_cache(args) -> int:
    from qadvisor.core.measure import artifacts
    from qadvisor.core.paths import default_cache_dir
    from qadvisor.format import GIB, MIB

    root = default_cache_dir()
    if args.clear:
        freed = artifacts.clear(root, args.clear)
        print(f"cleared {args.clear} in {root}: {freed / MIB:,.1f} MiB freed")
        return 0
    print(f"qadvisor's cache: {root}")
    rows = artifacts.cache_summary(root)
    width = max(len(part) for part, *_ in rows)
    for part, what, entries, size in rows:
        print(f"  {part:{width}s} {entries:4d} entries  {size / MIB:12,.1f} MiB  {what}")
    print(f"quantized models kept up to {artifacts.max_bytes() / GIB:g} GiB (${artifacts.MAX_GB_ENV}), the least "
          "recently used removed beyond it")
    return 0


def cmd_compare(args) -> int:
    from qadvisor.console import print_comparison
    from qadvisor.schemas.export import load_export

    first = load_export(args.first)
    if args.second is not None:
        print_comparison(first, load_export(args.second))
        return 0
    from qadvisor.app.views import per_kind

    kinds = [part for heading, part in per_kind(first) if heading]
    if len(kinds) < 2:
        raise UserError(f"{args.first}: one kind of hardware in this run; compare it with another run's export")
    print_comparison(kinds[0], kinds[1])
    return 0


def cmd_schema(args) -> int:
    from qadvisor.schemas.export import RunExport

    print(json.dumps(RunExport.model_json_schema(), indent=2))
    return 0


def cmd_plan(args) -> int:
    from qadvisor.app.plan import PlanJob, options
    from qadvisor.console import EventPrinter, print_plan

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    job = PlanJob(options(model=args.model, context=args.context, batch=args.batch, prompt_tokens=args.prompt_tokens,
                          target=args.target, methods=methods, measure=args.measure, device=args.device,
                          threads=args.threads))
    if job.measurement is not None:
        m = job.measurement
        printer = EventPrinter(len(m.methods) * len(m.depths))
        printer.say(f"measuring {', '.join(m.methods)} on {m.depths[0]}- and {m.depths[1]}-layer slices of "
                    f"{job.arch.name} here; each trial in its own process")
        for event in job.events():
            printer(event)
    result = job.plan()
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print_plan(result, explain=args.explain)
    return 0


def cmd_auto(args) -> int:
    """`qadvisor --auto`: measure every method, print the table, write the export. Ctrl-C stops the current trial
    and still prints and writes what finished (exit 130); a second Ctrl-C quits at once."""
    from qadvisor.app.auto import AutoSession
    from qadvisor.app.options import run_options, values_from_args
    from qadvisor.console import EventPrinter, print_run
    from qadvisor.core.hub import folder_name

    priorities = priorities_from_args(args)  # a bad profile fails before anything is measured
    opts = run_options(**values_from_args(args))
    printer = EventPrinter(0)
    session = AutoSession(opts, priorities, say=printer.say)
    run = session.run
    printer.total = session.trials()
    count = f"{len(run.recipes)} method{'s' if len(run.recipes) > 1 else ''}"
    printer.say(f"{count} on {folder_name(run.model_path)} ({run.device_label}); each runs in its own process")
    interrupted = _measure(session, printer)
    if not session.measured():
        printer.say("interrupted before the reference was ready: nothing measured, nothing written")
        return 130
    export = session.export()
    print_run(export)
    for line in session.write(export):
        printer.err.print(line)
    if interrupted:
        return 130
    return 0 if any(r.status == "ok" for r in export.results) else 1


def _measure(session, printer) -> bool:
    """Print the session's events; True when Ctrl-C (or SIGTERM, as `kill` and `timeout` send) stopped it. The first
    asks the runner to stop (it stops the trial's processes and keeps what finished, wherever the run was); a second
    one quits at once."""
    import signal
    import threading

    cancel = threading.Event()

    def on_ctrl_c(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        again = "Ctrl-C" if signum == signal.SIGINT else "another SIGTERM"
        printer.say(f"interrupted: the current trial is stopped; writing what finished ({again} quits at once)")

    previous = {sig: signal.signal(sig, on_ctrl_c) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for event in session.events(cancel):
            printer(event)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return cancel.is_set()


def cmd_tui(args) -> int:
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise UserError("the interactive TUI needs a terminal; use `qadvisor --auto` for a headless run")
    try:
        from qadvisor.tui.app import run_tui
    except ImportError:
        raise UserError("the TUI needs textual: pip install -e '.[tui]'") from None
    from qadvisor.tui.launch import tui_inputs

    run_tui(tui_inputs(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
