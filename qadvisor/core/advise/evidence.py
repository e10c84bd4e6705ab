"""What published figures say a method costs a model of the target's size (`--plan-for` without its weights).

The shipped model is too small for quantization to hurt it (2-bit methods lower its perplexity), so its accuracy is
no evidence for a 72B. Where Qwen published the perplexity of its own GGUF files at the target's size, that is the
target's evidence; elsewhere llama.cpp's published figures for the Llama model nearest in size, within a factor of
three, each labelled with the model it was measured on; otherwise the loss at this size is not known.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

NEAREST_FACTOR = 3.0  # a figure from a model more than this many times larger or smaller is no evidence at this size


@dataclass(frozen=True)
class Evidence:
    ppl_delta_pct: float  # perplexity rise over the unquantized model, in %
    kl_mean: float | None  # mean KL divergence, nats per token, where published
    top1: float | None  # agreement of the most likely token, where published
    figure: str  # the model it was measured on and the figures: `Qwen2-72B-Instruct Q2_K: wikitext PPL 5.58 → 5.91`
    source: str  # who published it, and where


@cache
def _data() -> dict:
    return json.loads(resources.files("qadvisor.data").joinpath("published-gguf-accuracy.json").read_text("utf-8"))


def params_b(model: str) -> float | None:
    """Billions of parameters a Qwen model's name says (`Qwen2.5-72B` → 72); None where it says none."""
    found = re.search(r"-(\d+(?:\.\d+)?)B\b", model)
    return float(found.group(1)) if found else None


def gguf_type(method: str) -> str | None:
    """The GGUF file type a method writes (`gguf-q4_k_m` → `q4_k_m`); None for other methods and stacks."""
    return method.removeprefix("gguf-") if method.startswith("gguf-") and "+" not in method else None


def evidence(model: str, method: str) -> Evidence | None:
    """The published accuracy of `method` at `model`'s size, or None where none is known."""
    kind, size = gguf_type(method), params_b(model)
    if kind is None or size is None:
        return None
    return _from_qwen(kind, size) or _from_llamacpp(kind, size)


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
    near = [(abs(math.log(row["params_b"] / size)), name, row) for name, row in llama["models"].items()
            if kind in row["types"]]
    if not near:
        return None
    distance, name, row = min(near)
    if distance > math.log(NEAREST_FACTOR):
        return None
    figures = row["types"][kind]
    base = row["fp16_ppl"]
    kl = f", KLD {figures['kld']:g}" if figures["kld"] is not None else ""
    return Evidence(ppl_delta_pct=100 * (figures["ppl"] / base - 1), kl_mean=figures["kld"], top1=figures["top1"],
                    figure=f"{name} {kind.upper()}: wikitext PPL {base:g} → {figures['ppl']:g}{kl}",
                    source=f"{llama['note']}; {llama['source']}")

