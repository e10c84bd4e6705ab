"""The comparison table of a run, as a rich Table (printed by `--auto`, reused by reports)."""

from __future__ import annotations

from rich.table import Table

from qadvisor.core import format as f
from qadvisor.models.export import RunExport

COLUMNS = (
    ("method", "left"), ("size MiB", "right"), ("vs bf16", "right"), ("prefill tok/s", "right"),
    ("decode tok/s", "right"), ("CV", "right"), ("TTFT ms", "right"), ("peak RSS MiB", "right"), ("PPL", "right"),
    ("ΔPPL", "right"), ("KL", "right"), ("top-1", "right"),
)


def results_table(export: RunExport) -> Table:
    table = Table(title=f"{export.model.name} on {export.settings.device}", title_justify="left", pad_edge=False)
    for name, justify in COLUMNS:
        table.add_column(name, justify=justify, no_wrap=name == "method")
    kv = _has_kv_stack(export)
    if kv:
        table.add_column("KV KiB", justify="right")
    for r in export.results:
        if r.status != "ok":
            continue  # listed under the table by `not_measured`, with the reason
        extra = [f.num(r.kv_cache_bytes / 1024, 0) if r.kv_cache_bytes else "—"] if kv else []
        table.add_row(
            r.method,
            f.mib(r.size_bytes),
            f"{r.compression_ratio:.2f}× ({r.size_reduction_pct:+.0f}%)",
            f.num(r.prefill_tok_s, 0),
            f.pm(r.decode_tok_s, r.decode_tok_s_spread),
            "—" if r.decode_cv is None else f"{100 * r.decode_cv:.1f}%",
            f.num(r.ttft_ms, 1),
            f.mib(r.peak_rss_bytes),
            f.num(r.ppl, 2),
            f.signed_pct(r.ppl_delta_pct),
            f.sci(r.kl_mean),
            f.pct(r.top1_agreement),
            *extra,
        )
    return table


def _has_kv_stack(export: RunExport) -> bool:
    """The KV cache matters to the reader only when a KV-cache method was stacked in this run."""
    return any("+kv-" in r.method for r in export.results)


def not_measured(export: RunExport) -> list[str]:
    lines = [f"{r.method} ({r.backend}): {r.status}: {r.reason}" for r in export.results if r.status != "ok"]
    done = {r.method for r in export.results}
    never = [m for m in export.cut if m not in done]
    if never:
        lines.append(f"{', '.join(never)}: not started, the run was stopped")
    return lines


def footnote(export: RunExport) -> str:
    m, s = export.model, export.settings
    accuracy = (f"fp32 reference PPL {m.ref_ppl:.2f} on {m.eval_tokens} held-out tokens" if m.ref_ppl is not None
                else "accuracy n/a: random weights")
    return (
        f"bf16 baseline {f.mib(m.bf16_bytes)} MiB (measured), {m.params:,} parameters; {accuracy}. Speed: batch 1, greedy, prompt {s.prompt_tokens} tokens, "
        f"{s.decode_tokens} new, median of {s.repeats} after a warm-up"
        + (f" (more where {s.repeats} take under {s.min_measure_s:g} s)" if s.min_measure_s else "")
        + ", ± half the range; CV = stdev ÷ mean of the repeats' decode. "
        "vs bf16 = bf16 bytes / method bytes on disk."
        + (f" KV = the cache after {s.prompt_tokens + s.decode_tokens - 1} positions." if _has_kv_stack(export) else "")
    )
