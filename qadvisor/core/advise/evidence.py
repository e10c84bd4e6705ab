"""What published figures say a method costs a model of the planned model's size (`--plan-for` without its weights).

The bundled model is too small for quantization to hurt it (2-bit methods lower its perplexity), so its accuracy is
no evidence for a 72B. For a GGUF type: where Qwen published the perplexity of its own GGUF files at the planned model's
size, that is the planned model's evidence; elsewhere llama.cpp's published figures for the Llama model nearest in size.
For the methods of Qwen's own GPTQ and AWQ releases: the drop of Qwen's published benchmark average (MMLU, C-Eval,
IFEval) for the Qwen2 model nearest in size. Nearest means within a factor of three, and each figure is labelled with
the model it was measured on; otherwise the loss at this size is not known. A mixture of experts (`Qwen3-30B-A3B`)
takes no dense model's figure: its total size is not what a dense model of that size is, nor its loss.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from qadvisor.bundled import package_data

NEAREST_FACTOR = 3.0  # a figure from a model more than this many times larger or smaller is no evidence at this size


@dataclass(frozen=True)
class Evidence:
    ppl_delta_pct: float | None  # perplexity rise over the unquantized model, in %, where published
    kl_mean: float | None  # mean KL divergence, nats per token, where published
    top1: float | None  # agreement of the most likely token, where published
    figure: str  # the model it was measured on and the figures: `Qwen2-72B-Instruct Q2_K: wikitext PPL 5.58 → 5.91`
    source: str  # who published it, and where
    score_delta_pct: float | None = None  # change of a benchmark average over the unquantized model, in % of it


RELEASES = {"gptq-int8": "GPTQ-Int8", "gptq-int4": "GPTQ-Int4", "awq-int4": "AWQ"}  # method → Qwen's release name


def _data(name: str = "published-gguf-accuracy.json") -> dict:
    return package_data(name)


def params_b(model: str) -> float | None:
    """Billions of parameters a Qwen model's name says (`Qwen2.5-72B` → 72); None where it says none."""
    found = re.search(r"-(\d+(?:\.\d+)?)B\b", model)
    return float(found.group(1)) if found else None


def is_moe_name(model: str) -> bool:
    """Whether a Qwen model's name says it is a mixture of experts (`…-30B-A3B`: 3 B of 30 B active)."""
    return re.search(r"-A\d+(?:\.\d+)?B\b", model) is not None


def gguf_type(method: str) -> str | None:
    """The GGUF file type a method writes (`gguf-q4_k_m` → `q4_k_m`); None for other methods and stacks."""
    return method.removeprefix("gguf-") if method.startswith("gguf-") and "+" not in method else None


def evidence(model: str, method: str) -> Evidence | None:
    """The published accuracy of `method` at `model`'s size, or None where none is known."""
    kind, size = gguf_type(method), params_b(model)
    if size is None or is_moe_name(model):
        return None
    if kind is None:
        return _from_qwen_scores(method, size)
    return _from_qwen(kind, size) or _from_llamacpp(kind, size)


def _nearest(sizes: dict[str, float], size: float) -> str | None:
    """The name whose size is nearest `size` on a log scale, within NEAREST_FACTOR; None where none is."""
    distance, name = min(((abs(math.log(b / size)), n) for n, b in sizes.items()), default=(math.inf, None))
    return name if distance <= math.log(NEAREST_FACTOR) else None


def _from_qwen_scores(method: str, size: float) -> Evidence | None:
    """Qwen's benchmark average of its own GPTQ/AWQ release against bf16, for the Qwen2 model nearest in size."""
    data = _data("qwen2-published-accuracy.json")
    if method not in RELEASES:
        return None
    name = _nearest({n: params_b(n) for n, rows in data["benchmarks"].items() if method in rows}, size)
    if name is None:
        return None
    rows = data["benchmarks"][name]
    base, quant = rows["bf16"][0], rows[method][0]  # the first column is the average of the others
    return Evidence(ppl_delta_pct=None, kl_mean=None, top1=None, score_delta_pct=100 * (quant / base - 1),
                    figure=f"{name} {RELEASES[method]}: benchmark average ({', '.join(data['columns'][1:])}) "
                           f"{base:g} → {quant:g}",
                    source=f"published by Qwen for Qwen2-Instruct (no such table for Qwen2.5), not measured by "
                           f"qadvisor; {data['source']}")


def _from_qwen(kind: str, size: float) -> Evidence | None:
    qwen = _data()["qwen"]
    if kind not in qwen["columns"]:
        return None
    for name, row in qwen["models"].items():
        if row["params_b"] == size:
            base, quant = row["ppl"][0], row["ppl"][qwen["columns"].index(kind)]
            return Evidence(ppl_delta_pct=100 * (quant / base - 1), kl_mean=None, top1=None,
                            figure=f"{name} {kind.upper()}: wikitext PPL {base:g} → {quant:g}",
                            source=f"{qwen['note']}; {qwen['source']}")
    return None


def _from_llamacpp(kind: str, size: float) -> Evidence | None:
    llama = _data()["llamacpp"]
    name = _nearest({n: row["params_b"] for n, row in llama["models"].items() if kind in row["types"]}, size)
    if name is None:
        return None
    row = llama["models"][name]
    figures = row["types"][kind]
    base = row["fp16_ppl"]
    kl = f", KLD {figures['kld']:g}" if figures["kld"] is not None else ""
    return Evidence(ppl_delta_pct=100 * (figures["ppl"] / base - 1), kl_mean=figures["kld"], top1=figures["top1"],
                    figure=f"{name} {kind.upper()}: wikitext PPL {base:g} → {figures['ppl']:g}{kl}",
                    source=f"{llama['note']}; {llama['source']}")

