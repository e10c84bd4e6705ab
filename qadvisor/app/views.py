"""What the faces show, computed once: each face (CLI, TUI, Markdown report) only lays these out in its widgets."""

from __future__ import annotations

from dataclasses import dataclass, field

from qadvisor import format as f
from qadvisor.app.advice import kind_export
from qadvisor.core import pace
from qadvisor.core.advise.evidence import evidence
from qadvisor.core.advise.mixes import advice_line
from qadvisor.core.contention import SPREAD, busy_labels, drift_labels, drifted, machine_words, marked, slow_labels
from qadvisor.quantizers import checkpoint, registry
from qadvisor.schemas.events import STEPS
from qadvisor.schemas.export import GGUF_EMULATED, RunExport
from qadvisor.schemas.hardware import HardwareInfo
from qadvisor.schemas.method import AS_SHIPPED
from qadvisor.schemas.result import TrialResult

TEXT_COLUMNS = ("method", "fits", "type", "backend", "here", "why / version", "methods", "verdict", "what it found",
                "uniform recipe", "fits here")  # left-aligned; numbers right


@dataclass
class TableView:
    title: str
    columns: list[str]
    rows: list[list[str]]
    headline: str = ""
    lines: list[str] = field(default_factory=list)  # reasons, comparisons
    notes: list[str] = field(default_factory=list)  # what is left out, sources
    above: list[str] = field(default_factory=list)  # lines before the table (which runs a comparison reads)


def per_kind(export: RunExport) -> list[tuple[str, RunExport]]:
    """--cluster: one export per hardware kind (app.advice.kind_export), each shown as a run on one machine is; a run
    on one machine is its own single kind."""
    if not export.kinds:
        return [("", export)]
    return [(f"On {k.kind} ({len(k.nodes)} node{'s' if len(k.nodes) > 1 else ''}: {', '.join(k.nodes)}"
             + ("; each method's row: the node with the median decode" if len(k.nodes) > 1 else "") + ")",
             kind_export(export, k))
            for k in export.kinds]


def hardware_lines(hw: HardwareInfo) -> list[tuple[str, str]]:
    """(label, text) per line: what `qadvisor hardware`, the TUI's first screen and the report say of a machine."""
    gpus = "; ".join(f"{g.name} {f.gib(g.vram_bytes)} (compute {g.compute_capability}, driver {g.driver})"
                     for g in hw.gpus)
    return [("CPU", f"{hw.cpu_model} — {hw.physical_cores} physical / {hw.logical_cores} logical cores"),
            ("ISA", ", ".join(hw.isa_flags) or "none of AVX2 / AVX-512 / AMX / NEON"),
            ("RAM", f"{f.gib(hw.ram_total_bytes)} total, {f.gib(hw.ram_available_bytes)} available; "
                    f"disk {f.gib(hw.disk_free_bytes)} free"),
            ("GPU", gpus or hw.gpu_note),
            ("SW", f"{hw.os}, Python {hw.python}, torch {hw.torch or 'not installed'}, CUDA {hw.cuda or 'none'}")]


def method_rows(has_cuda: bool, findings: dict[str, str] | None = None) -> list[dict]:
    """Every method with whether it runs here (and why not), whether it is in the default set, and which KV-cache
    methods stack on it: what `qadvisor methods` prints (or writes as JSON) and the TUI offers. `findings`: what
    earlier runs found of a backend here (core.hardware.backend_findings), as each of its methods' `finding`."""
    stacks = registry.kv_compatibility()
    rows = []
    forms = registry.method_forms()
    for spec in [*registry.methods().values(), *forms]:
        ok, reason = registry.method_available(spec, has_cuda)
        found = (findings or {}).get(spec.backend) if ok else None
        stand_in = registry.backend_for(spec).stand_in  # a form stacks as its backend's methods do
        rows.append({**spec.model_dump(), "available": ok, "reason": reason, "finding": found,
                     "default": spec.name in registry.DEFAULT_METHODS,
                     "form": spec in forms,  # a name to fill in (gguf-mix@<budget>), not a method to pick as it is
                     "kv_stack": stacks.get(spec.name, stacks.get(stand_in)),  # '' stacks with every KV method; None: a KV method
                     "not_on": registry.families_refused(spec)})  # family label → why the method refuses it
    return rows


def as_shipped_rows() -> list[dict]:
    """The quantized formats a checkpoint can be measured in as shipped (`--model CHECKPOINT`), and whether the library
    that reads each is here: the second half of `qadvisor methods`."""
    rows = []
    for fmt in checkpoint.FORMATS:
        ok, why = checkpoint.installed(fmt)
        says = (f"config.json's quant_method {fmt.quant_method!r}" if fmt.quant_method
                else "a .gguf file's general.file_type (a split one: its first part)")
        rows.append({"format": fmt.name, "method": f"{AS_SHIPPED}{fmt.name}-…", "backend": fmt.backend,
                     "says": says, "available": ok, "reason": why})
    return rows


def backends_view(hw: HardwareInfo) -> TableView:
    rows = [[b.backend, "yes" if b.available else "no", b.reason, ", ".join(b.methods)] for b in hw.backends]
    return TableView(title="Backends", columns=["backend", "here", "why / version", "methods"], rows=rows)


def doctor_view(report) -> TableView:
    """`qadvisor doctor`'s table (models.doctor.DoctorReport): what the console prints and the TUI's hardware screen
    shows."""
    rows = [[r.backend, r.method, r.verdict, r.detail, f.num(r.seconds, 1)] for r in report.rows]
    busy = f"{100 * report.cpu_contention:.0f} %"
    return TableView(title=f"Backends tried on a tiny model ({report.created_at[:16].replace('T', ' ')} UTC)",
                     columns=["backend", "method", "verdict", "what it found", "s"], rows=rows,
                     above=[f"ISA {', '.join(report.isa_flags) or 'none of note'}; {report.threads} threads; other "
                            f"processes took {busy} of the CPU as it started"
                            + (" — speeds measured now would be low" if report.cpu_contention > 0.10 else "")],
                     notes=[f"{report.total_s:.0f} s in all; every backend quantized afresh (no cached file); a "
                            "fallback is kept, so runs start in it"])


# A trial's numbers in one line, in the order the trial measures them: the TUI's panel as metrics arrive, the command
# line's line per result. `values` is a result's fields or the metrics heard so far (name → number).
_METRIC_TEXT = (
    ("size_bytes", lambda m: f"{f.mib(m['size_bytes'])} MiB"),
    ("compression_ratio", lambda m: f"{m['compression_ratio']:.2f}× vs bf16"),
    ("peak_rss_bytes", lambda m: f"peak {f.mib(m['peak_rss_bytes'])} MiB"),
    ("decode_tok_s", lambda m: f"decode {f.pm(m['decode_tok_s'], m.get('decode_tok_s_spread'))} tok/s"),
    ("prefill_tok_s", lambda m: f"prefill {f.pm(m['prefill_tok_s'], m.get('prefill_tok_s_spread'), 0)} tok/s"),
    ("ppl_delta_pct", lambda m: f"ΔPPL {f.signed_pct(m['ppl_delta_pct'])}"),
    ("kl_mean", lambda m: f"KL {f.sci(m['kl_mean'])}"),
    ("top1_agreement", lambda m: f"top-1 {100 * m['top1_agreement']:.1f}%"),
)


BRIEF_METRICS = ("size_bytes", "compression_ratio", "decode_tok_s", "ppl_delta_pct", "kl_mean")  # the three numbers


def metrics_line(values: dict, only: tuple[str, ...] | None = None) -> str:
    """What of a trial's numbers is known so far (of `only`, when given), as one line."""
    return " · ".join(text(values) for name, text in _METRIC_TEXT
                      if values.get(name) is not None and (only is None or name in only))


RESULT_COLUMNS = ["method", "size MiB", "vs bf16", "prefill tok/s", "decode tok/s", "CV", "TTFT ms", "peak RSS MiB",
                  "PPL", "ΔPPL", "KL", "top-1", "type"]


def results_view(export: RunExport) -> TableView:
    """The measured table: one row per method that finished; the others, and how to read it, as notes."""
    rec = export.recommendation
    kv = any("+kv-" in r.method for r in export.results)  # the KV cache column only when a KV method was stacked
    rows = [[r.method, f.mib(r.size_bytes), f"{r.compression_ratio:.2f}× ({f.size_change(r.size_reduction_pct)})",
             f.num(r.prefill_tok_s, 0), f.pm(r.decode_tok_s, r.decode_tok_s_spread) + (" ⚠" if marked(r) else " ≈" if drifted(r) else ""),
             "—" if r.decode_cv is None else f"{100 * r.decode_cv:.1f}%", f.num(r.ttft_ms, 1), f.mib(r.peak_rss_bytes),
             f.num(r.ppl, 2), f.signed_pct(r.ppl_delta_pct), f.sci(r.kl_mean), f.pct(r.top1_agreement),
             rec.label(r.method) if rec and rec.archetypes else "—"]
            + ([f.num(r.kv_cache_bytes / 1024, 0) if r.kv_cache_bytes else "—"] if kv else [])
            for r in export.results if r.status == "ok"]
    view = TableView(title=f"{export.model.name} on {export.settings.device}",
                     columns=RESULT_COLUMNS + (["KV KiB"] if kv else []), rows=rows)
    view.lines = [f"not measured: {line}" for line in not_measured(export)]
    view.notes = [_footnote(export, kv)]
    return view


def result_notes(results: list[TrialResult]) -> list[str]:
    """Each note the finished results carry (what a method ran with here), once, with the methods it is about; and
    which speeds were timed while other processes took the CPU."""
    methods: dict[str, list[str]] = {}
    for r in results:
        for note in r.notes if r.status == "ok" else []:
            methods.setdefault(note, []).append(r.method)
    lines = [f"{', '.join(names)}: {note}" for note, names in methods.items()]
    return lines + contention_lines(results)


def contention_lines(results: list[TrialResult]) -> list[str]:
    """The lines naming the speeds timed on a busy CPU or a slow machine (none where none was)."""
    busy, slow, moved = busy_labels(results), slow_labels(results), drift_labels(results)
    lines = []
    if busy:
        lines.append(f"⚠ other processes took the CPU while these were timed, twice: {', '.join(busy)}. Their speeds "
                     "are low by about that share or more; measure again on a quiet machine")
    if slow:
        lines.append(f"⚠ the machine ran slow while these were timed, twice (a fixed workload took longer than at the "
                     f"run's start, core.pace): {', '.join(slow)}. Their speeds are low by about that factor")
    if moved:
        lines.append(f"≈ decode more than {100 * SPREAD:.0f} % from this machine's earlier runs of the same model, with "
                     f"no busy CPU or slow machine seen: {'; '.join(moved)}. The speed moves between processes here; "
                     "compare methods by ratios timed side by side, or run again")
    return lines


def not_measured(export: RunExport) -> list[str]:
    lines = [f"{r.method} ({r.backend}): {r.status}: {r.reason}" for r in export.results if r.status != "ok"]
    done = {r.method for r in export.results}
    never = [m for m in export.cut if m not in done]
    if never:
        lines.append(f"{', '.join(never)}: not started (incomplete run, stopped by the user)")
    return lines


def _footnote(export: RunExport, kv: bool) -> str:
    m, s = export.model, export.settings
    text = m.eval_text.words(m.eval_tokens) if m.eval_text else f"{m.eval_tokens} evaluation tokens"
    accuracy = (f"fp32 reference PPL {m.ref_ppl:.2f} on {text}" if m.ref_ppl is not None
                else "accuracy n/a: no reference model to compare the checkpoints with (--reference DIR)" if m.checkpoints
                else "accuracy n/a: random weights")
    return (f"bf16 baseline {f.mib(m.bf16_bytes)} MiB ({m.bf16_basis}), {m.params:,} parameters; {accuracy}. Speed: batch 1, "
            f"greedy, prompt {s.prompt_tokens} tokens, {s.decode_tokens} new{_shortened(export)}, median of {s.repeats} "
            "after a warm-up" + (f" (more where {s.repeats} take under {s.min_measure_s:g} s)" if s.min_measure_s else "")
            + ", ± half the range; CV = stdev ÷ mean of the repeats' decode. vs bf16 = bf16 bytes / method bytes on "
            "disk (size change in brackets); type = the archetype (Tool A / B / C) it qualifies for, base = an unquantized baseline."
            + (f" KV = the cache after {s.prompt_tokens + s.decode_tokens - 1} positions." if kv else ""))


def _shortened(export: RunExport) -> str:
    """The methods whose timed runs decoded fewer tokens than asked (slow steps or a time budget), with how many."""
    asked = export.settings.decode_tokens
    short = [f"{r.method} {r.decode_tokens}" for r in export.results
             if r.status == "ok" and r.decode_tokens and r.decode_tokens < asked]
    return f" (fewer in each timed run where {asked} would overrun the measuring time: {', '.join(short)})" if short else ""


def recommendation_view(export: RunExport) -> TableView:
    """The advisor's answer: headline, reasons with numbers, archetypes, Pareto front, what would flip it. `title`
    says which priorities it answers."""
    rec = export.recommendation
    p = rec.priorities or export.priorities
    view = TableView(title=priorities_line(p) if p is not None else "", columns=[], rows=[], headline=rec.headline)
    view.lines = list(rec.reasons) + list(filter(None, [advice_line(rec.method, export.results)]))
    view.lines += [f"what would change it: {rec.flip}"] if rec.flip else []
    if not export.complete:  # the advice weighs only what finished: a stopped run must not read as a whole one
        view.lines.insert(0, f"the run was stopped: advised on what finished, without {', '.join(export.cut)}")
    if rec.archetypes:
        fits = rec.fits
        groups = {k: [m for m, a in fits.items() if k in a and not (k == "C" and m in rec.baselines)] for k in "ABC"}
        line = "; ".join(f"{k}: {', '.join(v) or '—'}" for k, v in groups.items())
        line += f"; baseline (not quantized): {', '.join(rec.baselines)}" if rec.baselines else ""
        view.lines.append("archetypes here: " + line)
    view.lines.append(f"Pareto front (size × speed × loss): {', '.join(rec.pareto_front) or '—'}")
    view.lines += [f"ruled out {method}: {'; '.join(why)}" for method, why in rec.ruled_out.items()]
    view.notes = [f"measured on {rec.device}"] if rec.device else []
    return view


def score_view(export: RunExport) -> TableView:
    """The compact table beside the re-advise weights: each method's archetype, score, loss, speed and size."""
    rec = export.recommendation
    rows = []
    for r in export.results:
        if r.status != "ok":
            rows.append([r.method, "—", r.status, "", "", ""])
            continue
        score = rec.scores.get(r.method)
        # unscored is not ruled out: a baseline with nothing quantized beside it, or a result without accuracy
        unscored = "ruled out" if r.method in rec.ruled_out else "—"
        rows.append([r.method, rec.label(r.method), f"{score.total:.2f}" if score else unscored,
                     f.signed_pct(r.ppl_delta_pct), f.num(r.decode_tok_s), f.mib(r.size_bytes)])
    # by importance, left to right: a narrow pane (80 columns) cuts the size before the score
    return TableView(title="", columns=["method", "type", "score", "ΔPPL", "tok/s", "MiB"], rows=rows)


def priorities_line(p) -> str:
    w = p.weights()
    limits = ", ".join(f"{k}={v:g}" for k, v in p.limits.model_dump().items() if v is not None) or "none"
    return (f"priorities {p.name}: storage {w['storage']:.2f}, latency {w['latency']:.2f}, accuracy {w['accuracy']:.2f}; "
            f"limits: {limits}")


def comparison_view(c, label_a: str, label_b: str) -> TableView:
    """Two runs side by side (core.advise.compare): per method the change in each metric, and whether the advice differs."""
    rows = [[p.method, f"{f.mib(p.a.size_bytes)}→{f.mib(p.b.size_bytes)}",
             f"{p.a.decode_tok_s:.1f}→{p.b.decode_tok_s:.1f}", f"{p.decode_ratio:.2f}×",
             f"{f.signed_pct(p.a.ppl_delta_pct)}→{f.signed_pct(p.b.ppl_delta_pct)}",
             f"{f.sci(p.a.kl_mean)}→{f.sci(p.b.kl_mean)}"] for p in c.pairs]
    view = TableView(title="", above=[f"A {label_a}", f"B {label_b}"], rows=rows,
                     columns=["method", "size MiB A→B", "decode tok/s A→B", "B/A", "ΔPPL A→B", "KL A→B"])
    view.headline = (f"with priorities {c.priorities.name}: A → {c.advice_a.headline}; B → {c.advice_b.headline}: "
                     + ("the same" if c.same_advice else "different"))
    if c.only_in_a or c.only_in_b:
        view.notes = ["measured in one run only: " + ", ".join([f"{m} (A)" for m in c.only_in_a]
                                                               + [f"{m} (B)" for m in c.only_in_b])]
    ratios = c.decode_ratios()
    if c.same_setup and ratios and len(c.pairs) > 1:  # nothing but the runs differs: their spread is the noise
        view.notes.append(f"the same hardware, model and lengths in both runs: B/A decode from {ratios[0]:.2f}× to {ratios[2]:.2f}× "
                          f"(median {ratios[1]:.2f}×): unless a library or setting changed between them, that is "
                          "how far separate runs of this machine move; compare methods within one run, where their "
                          "ratios hold")
    busy = contention_differs(c.pairs)
    if busy:
        view.notes.append(busy)
    return view


def contention_differs(pairs) -> str:
    """A warning where one run timed a method on a busy CPU or a slow machine and the other did not ('' where none):
    their speeds then differ by what the host took, not by the machines or models."""
    lines = []
    for p in pairs:
        if marked(p.a) != marked(p.b):
            side, busy = ("A", p.a) if marked(p.a) else ("B", p.b)
            lines.append(f"{p.method} ({side}: {machine_words(busy.cpu_contention, busy.pace_ratio)})")
    if not lines:
        return ""
    return ("⚠ timed on a busy CPU or a slow machine in one run only: " + "; ".join(lines) + ". Their B/A ratios say "
            "more about the host than about the two runs")


def target_view(export: RunExport) -> TableView | None:
    """The advice for the model the team will deploy; every column says what kind of number it is."""
    t = export.target
    if t is None:
        return None
    fits = {r.method: r.fits for r in export.plan.plans} if export.plan else {}
    kv = any("+kv-" in r.method for r in t.results)  # a KV stack: every method's cache at the planned context
    scores = any(r.score_delta_pct is not None for r in t.results)  # published benchmark evidence
    rows = [[r.method, f"{r.size_bytes / f.GIB:.1f}", f.size_change(r.size_reduction_pct),
             f.pm(r.decode_tok_s, r.decode_tok_s_spread, 2) + (" ⚠" if marked(r) else ""), f.num(r.prefill_tok_s),
             "yes" if fits.get(r.method) else "no", f.signed_pct(r.ppl_delta_pct)]
            + ([f.signed_pct(r.score_delta_pct)] if scores else []) + [f.sci(r.kl_mean), r.accuracy_basis]
            + ([f.gib_figure(r.kv_cache_bytes) if r.kv_cache_bytes else "—"] if kv else [])
            for r in t.results]
    bound = export.plan is not None and export.plan.target.device_type == "gpu"
    speed = "decode: the bandwidth bound, an upper limit (datasheet)" if bound else "decode projected from slices measured here"
    if any(r.decode_kind == "estimate" for r in t.results):
        speed += " (read from disk where it does not fit in RAM: an estimate)"
    view = TableView(
        title=f"For {t.model} on {t.target}: size estimated by the planner, {speed}, "
              + ("accuracy streamed on its own weights" if export.streamed else
                 f"accuracy published at this size where known (else {export.model.name}'s, marked proxy)"),
        columns=["method", "size GiB", "vs bf16", "decode tok/s ≤" if bound else "decode tok/s", "prefill tok/s",
                 "fits", "ΔPPL"] + (["Δscore"] if scores else []) + ["KL", "accuracy"] + (["KV GiB"] if kv else []),
        rows=rows)
    if t.recommendation is not None:
        view.headline = f"Recommendation for {t.model}: {t.recommendation.headline}"
        view.lines = t.recommendation.reasons + t.comparison
    elif t.accuracy_note:
        view.headline = f"No recommendation for {t.model}"
    view.lines += [t.accuracy_note] if t.accuracy_note else []
    view.notes = [f"not in the {t.model} advice: {m}: {why}" for m, why in t.left_out.items()]
    if kv and export.plan is not None:
        view.notes.append(f"KV GiB: the cache at context {export.plan.context}, estimated by the planner (a stack's "
                          "quantized cache: bits/8 per element plus a scale and a shift per group of 64)")
    if scores:
        view.notes.append("Δscore: the change of a benchmark average Qwen published for its own release (MMLU, C-Eval, "
                          "IFEval), in % of the unquantized model's; the evidence where no perplexity was published")
    view.notes += streamed_lines(export) + _evidence_sources(t.model, t.results)
    if t.published:
        p = t.published
        view.notes.append(f"published by Qwen for {p['model']} ({', '.join(p['columns'])}): " + "; ".join(
            f"{name} {' / '.join(f'{v:g}' for v in row)}" for name, row in p["rows"].items()))
        view.notes.append(f"{p['note']}. Source: {p['source']}")
    view.notes += published_speed_lines(export)
    return view


def streamed_lines(export: RunExport) -> list[str]:
    """How the planned model's own accuracy was streamed, what it cost, and what could not be."""
    s = export.streamed
    if s is None:
        return []
    if s.error:
        return [f"accuracy could not be streamed on {s.path}: {s.error}"]
    cost = ", ".join(_layer_cost(m.method, m.seconds_per_layer, m.layer_time) for m in s.methods
                     if m.seconds_per_layer is not None)
    text = s.eval_text.words(s.tokens) if s.eval_text else f"{s.tokens} tokens"
    lines = [f"accuracy streamed on {s.path}: {s.layers} layers one at a time over {text}, fp32 reference "
             f"PPL {f.num(s.ref_ppl, 2)}; seconds per layer: {_layer_cost('fp32', s.ref_seconds_per_layer, s.ref_layer_time)}"
             + (f", {cost}" if cost else "")
             + (f"; peak memory {f.gib(s.peak_rss_bytes)}" if s.peak_rss_bytes else "")
             + ("" if s.complete else " (stopped before every method streamed)")]
    lines += [f"{m.method}: streaming failed: {m.error} (log: {s.log})" for m in s.methods if m.error]
    lines += [f"{m}: not streamed: {why}" for m, why in s.not_streamed.items()]
    gguf = [m.method for m in s.methods if m.method.startswith("gguf-") and m.ppl is not None]
    if gguf:
        lines.append(f"{', '.join(gguf)}: {GGUF_EMULATED}")
    return lines


def _layer_cost(method: str, seconds: float | None, split) -> str:
    """`bnb-nf4 8.02 (read 0.40 + quantize 6.10 + compute 1.50)`: a streamed pass's seconds per layer."""
    return f"{method} {f.num(seconds, 2)}" + (f" ({split.words()})" if split else "")


def _evidence_sources(model: str, results: list[TrialResult]) -> list[str]:
    """Each published figure behind a planned model's accuracy column, and each source once."""
    found = [(r.method, evidence(model, r.method)) for r in results if r.accuracy_basis == "published"]
    lines = [f"{method} accuracy: {e.figure}" for method, e in found if e]
    return lines + [f"Source: {source}" for source in dict.fromkeys(e.source for _, e in found if e)]


def published_speed_lines(export: RunExport) -> list[str]:
    """Qwen's A100 figures beside the bounds: how far real kernels at batch 1 come (the bound is an upper limit)."""
    t = export.target
    p = t.published_speed
    if not p:
        return []
    def row(method, gpus, tok_s, setting):
        how = ", ".join(x for x in (f"{gpus} GPUs" if gpus > 1 else "", setting) if x)
        return f"{method} {tok_s:g}" + (f" ({how})" if how else "")

    lines = [f"published by Qwen for {p['model']} on A100 80GB, decode tok/s: " + "; ".join(
        f"{engine} " + ", ".join(row(*r) for r in rows) for engine, rows in p["engines"].items())]
    bounds = {r.method: r.decode_tok_s for r in t.results if r.decode_kind == "bound"}
    one_gpu = [(engine, m, tok_s) for engine, rows in p["engines"].items() for m, gpus, tok_s, _ in rows
               if gpus == 1 and m in bounds]
    if one_gpu and export.plan.target.name == "A100-80GB":  # Qwen's GPU; the bound is one GPU's, whatever the count
        lines.append("against the bound on one A100: " + ", ".join(
            f"{m} {engine} {tok_s / bounds[m]:.0%} of {f.num(bounds[m], 1)}" for engine, m, tok_s in one_gpu))
    lines.append(f"{p['note']}. Source: {p['source']}")
    return lines


def time_view(export: RunExport) -> TableView:
    """Where the run's time went, per method and step (seconds measured in this run). A method whose quantized model
    came from the cache shows "cached" for quantize; its quantize time from the run that made it is in brackets."""
    measured = [r for r in export.results if r.status == "ok" and r.step_s]
    rows = []
    for r in measured:
        steps = [f"{r.step_s[name]:.1f}" if name in r.step_s else "—" for name in STEPS]
        if r.cached:
            steps[STEPS.index("quantize")] = f"cached ({r.quantize_s:.1f})" if r.quantize_s is not None else "cached"
        rows.append([r.method, f.num(r.start_s), *steps, f"{_trial_s(r):.1f}"])
    ref = (f"reference step {export.reference_s:.1f} s" if export.reference_s is not None
           else "reference from the cache" if not export.kinds
           else "reference computed once per hardware kind, on "
           + ", ".join(k.reference_node or "each node" for k in export.kinds))
    view = TableView(title="Where the time went (seconds in this run)", columns=["method", "start", *STEPS, "total"],
                     rows=rows)
    view.notes = ["start = the trial process's start and the imports before its first step; quantize \"cached\": the "
                  "model came from the cache (in brackets, how long quantizing took when it was made)",
                  f"{ref}; {_trials_line(measured)}" + _from_cache(measured)
                  + ("" if export.settings.reuse_cache else " (--no-cache: the cache was refreshed)")]
    view.notes += _first_calls(measured)
    if export.settings.pace_baseline_s:  # what the busy-machine check costs: it must stay a few percent of a run
        b = export.settings.pace_baseline_s
        view.notes.append(f"busy-machine check (core.pace): a fixed workload took {1000 * b:.1f} ms at the run's "
                          f"start; it runs {pace.ROUNDS} times before and after each timing, about "
                          f"{2 * pace.ROUNDS * b:.2f} s a timing (estimate: 2 × {pace.ROUNDS} × that time)")
    slices = slice_time_line(export.plan) if export.plan is not None else ""
    if slices:
        view.notes.append(slices)
    return view


def slice_time_line(plan) -> str:
    """Where `plan --measure`'s time went: building the slices, then each method on them ('' when not measured)."""
    spent = plan.measure_s
    if not spent:
        return ""
    built = spent.get("slices")
    parts = ["" if built is None else "built before (cached)" if built < 1 else f"building them {built:.0f}"]
    parts += [f"{name} {s:.0f}" for name, s in spent.items() if name != "slices"]
    return (f"slices of {plan.model} (each method: quantize and save both depths, then time them side by side), "
            f"seconds: {', '.join(p for p in parts if p)}; {sum(spent.values()):.0f} s in all")


FIRST_CALL_NOTED_S = 1.0  # below this, a first forward pass's extra time is not worth a line


def _from_cache(measured: list[TrialResult]) -> str:
    """How many quantized models came from the cache, of those quantized (a checkpoint measured as shipped is not)."""
    quantized = sum(not r.method.startswith(AS_SHIPPED) for r in measured)
    return f", {sum(r.cached for r in measured)} of {quantized} quantized models from the cache" if quantized else ""


def _first_calls(measured: list) -> list[str]:
    """The methods whose evaluate step is mostly a first forward pass that compiled or picked kernels (gptq-int2's
    torch.compile): without this line its evaluate time reads as slow scoring."""
    slow = [f"{r.method} {r.first_call_s:.1f} s" for r in measured if (r.first_call_s or 0.0) >= FIRST_CALL_NOTED_S]
    if not slow:
        return []
    return ["evaluate includes what the first forward pass took beyond a later one (kernels compiled or picked on "
            "first use, once per process): " + ", ".join(slow)]


def _trials_line(measured: list) -> str:
    """The trials' seconds added up: per node on a cluster, where nodes measure at the same time (their sum is no
    wall time)."""
    per_node: dict[str, float] = {}
    for r in measured:
        per_node[r.node or ""] = per_node.get(r.node or "", 0.0) + _trial_s(r)
    if len(per_node) < 2:
        return f"trials {sum(per_node.values()):.0f} s in all"
    return "trials per node, the nodes at the same time: " + ", ".join(f"{n} {s:.0f} s" for n, s in per_node.items())


def _trial_s(r) -> float:
    """A trial's seconds from its process's start to its result."""
    return (r.start_s or 0.0) + (r.total_s or 0.0)
