"""A GGUF mix made for a team's budget: which type each matrix took, and why (quantizers.ggufmix)."""

from __future__ import annotations

import re

from pydantic import BaseModel


class GgufMix(BaseModel):
    """The types a `gguf-mix@…` method gave each matrix, from their sensitivities measured on this model."""

    budget: str  # what it was made for, in words
    tensor_types: dict[str, str]  # GGUF tensor name → GGML type (token_embd.weight → Q8_0)
    bits_per_weight: float  # of the matrices the mix typed (norms and biases, kept F32, not counted)
    matrix_bytes: int
    # the sum of each matrix's added KL at its type over the calibration text (additivity assumed), plus inputs_kl
    predicted_kl: float
    # the KL of llama.cpp's rounding of each matmul's input alone (Q8_K / Q8_0 by the weight's type), measured once for
    # the whole mix; None where not measured (a streamed mix: its prediction is the matrices' sum alone)
    inputs_kl: float | None = None
    # the whole mix at once over the same text, weights and inputs rounded (torch): additivity checked
    together_kl: float | None = None
    sensitivity_tokens: int = 0  # calibration tokens the sensitivities were measured on
    seconds_per_layer: float = 0.0  # the sensitivity pass, per decoder layer
    added_kl: dict[str, dict[str, float]] = {}  # each matrix's KL at each type its rows allow (the sensitivity map)

    def overrides(self) -> list[tuple[str, str]]:
        """(pattern, type) pairs for llama.cpp's tensor-type overrides: one per role and type, its layers listed."""
        by_role: dict[tuple[str, str], list[str]] = {}
        for name, kind in self.tensor_types.items():
            parts = name.split(".")
            if parts[0] == "blk":
                by_role.setdefault((".".join(parts[2:]), kind), []).append(parts[1])
            else:
                by_role.setdefault((name, kind), [])
        pairs = []
        for (role, kind), layers in sorted(by_role.items()):
            escaped = re.escape(role)
            pairs.append((f"^blk\\.({'|'.join(layers)})\\.{escaped}$" if layers else f"^{escaped}$", kind))
        return pairs

    def quantize_command(self, source: str = "model-f16.gguf", out: str = "model-mix.gguf") -> str:
        """The llama-quantize command that gives the team's own f16 GGUF the same types."""
        flags = " ".join(f"--tensor-type '{pattern}={kind.lower()}'" for pattern, kind in self.overrides())
        return f"llama-quantize {flags} {source} {out} Q8_0"
