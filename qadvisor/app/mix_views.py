"""The GGUF mixes a run measured, as every face shows them: each against the uniform recipe whose size it was made
within, its predicted loss beside its measured one, and the llama-quantize line that makes the same file."""

from __future__ import annotations

from qadvisor import format as f
from qadvisor.app.views import TableView
from qadvisor.core.advise.mixes import against_uniform, mixes, nearest_uniform, prediction_error
from qadvisor.schemas.export import RunExport

COLUMNS = ["method", "size MiB", "bits/weight", "KL measured", "KL predicted", "predicted vs measured", "KL together",
           "uniform recipe"]


def mix_view(export: RunExport) -> TableView | None:
    """None where the run measured no mix."""
    found = mixes(export.results)
    if not found:
        return None
    rows = []
    for r in found:
        other = nearest_uniform(r, export.results)
        error = prediction_error(r)
        rows.append([r.method, f.mib(r.size_bytes), f"{r.mix.bits_per_weight:.2f}", f.sci(r.kl_mean),
                     f.sci(r.mix.predicted_kl), "—" if error is None else f.signed_pct(100 * error),
                     f.sci(r.mix.together_kl), other.method if other else "—"])
    first = found[0].mix
    return TableView(
        title="GGUF mixes made for a budget from this model's measured sensitivity", columns=COLUMNS, rows=rows,
        lines=[line for r in found if (line := against_uniform(r, export.results))]
        + [f"{r.method}, from your own f16 GGUF: {r.mix.quantize_command()}" for r in found],
        notes=[f"KL predicted: the sum of each matrix's KL at its type alone (sensitivities over {first.sensitivity_tokens} "
               f"calibration tokens, {first.seconds_per_layer:.1f} s a decoder layer; additivity assumed), plus the KL "
               "of llama.cpp's rounding of the matmuls' inputs, measured once for the mix; KL together: the whole mix "
               "at once over the same text in torch; KL measured: llama.cpp's file on the held-out text"])
