"""What to run: a method spec (the config object is the API) and recipes that may stack several."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from qadvisor.errors import UserError

Target = Literal["weights", "kv-cache"]


class MethodSpec(BaseModel):
    """One quantization method, e.g. `gptq-int4` = GPTQModel, 4-bit, group size 128."""

    model_config = ConfigDict(frozen=True)

    name: str
    backend: str
    bits: float  # nominal bits per quantized weight (16 and 32 for the unquantized baselines)
    scheme: str  # int8, int4, nf4, fp4, bf16, ...
    group_size: int | None = None
    target: Target = "weights"
    summary: str = ""


class Recipe(BaseModel):
    """One or more specs applied together, written `bnb-nf4+kv-int4`. Never stacked silently: see `check_recipe`."""

    model_config = ConfigDict(frozen=True)

    parts: tuple[MethodSpec, ...]

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.parts)

    @property
    def weights(self) -> MethodSpec:
        return next(p for p in self.parts if p.target == "weights")


def parse_recipe(text: str, known: dict[str, MethodSpec]) -> Recipe:
    """Parse `a` or `a+b` against the registry's known specs; unknown names are a UserError."""
    names = [n.strip() for n in text.split("+") if n.strip()]
    if not names:
        raise UserError(f"empty method name {text!r}")
    parts = []
    for name in names:
        if name not in known:
            raise UserError(f"unknown method {name!r}; run `qadvisor methods` to list them")
        parts.append(known[name])
    recipe = Recipe(parts=tuple(parts))
    check_recipe(recipe)
    return recipe


def check_recipe(recipe: Recipe) -> None:
    """Explain why a stack cannot run rather than stacking tools that conflict."""
    weights = [p for p in recipe.parts if p.target == "weights"]
    if len(weights) != 1:
        names = ", ".join(p.name for p in weights) or "none"
        raise UserError(
            f"{recipe.name}: a recipe needs exactly one weight method (got {names}); two weight quantizers "
            "would each replace the same Linear layers, so they cannot stack"
        )
    kv = [p for p in recipe.parts if p.target == "kv-cache"]
    if len(kv) > 1:
        raise UserError(f"{recipe.name}: at most one KV-cache method")
