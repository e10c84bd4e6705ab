"""What to run: a method spec (the config object is the API) and recipes that may stack several."""

from __future__ import annotations

from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict

from qadvisor.errors import UserError

Component = Literal["weights", "kv-cache"]  # what a method quantizes
AS_SHIPPED = "as-shipped:"  # how a checkpoint measured as it is names its method (quantizers.checkpoint)


class MethodSpec(BaseModel):
    """One quantization method, e.g. `gptq-int4` = GPTQModel, 4-bit, group size 128."""

    model_config = ConfigDict(frozen=True)

    name: str
    backend: str
    bits: float  # nominal bits per quantized weight (16 and 32 for the unquantized baselines)
    scheme: str  # int8, int4, nf4, fp4, bf16, ...
    group_size: int | None = None
    component: Component = "weights"
    summary: str = ""
    # a checkpoint measured as it is (quantizers.checkpoint): its folder or .gguf file; None for a method qadvisor runs
    source: str | None = None


class Recipe(BaseModel):
    """One or more specs applied together, written `bnb-nf4+kv-int4`. Never stacked silently: see `check_recipe`."""

    model_config = ConfigDict(frozen=True)

    parts: tuple[MethodSpec, ...]

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.parts)

    @property
    def weights(self) -> MethodSpec:
        return next(p for p in self.parts if p.component == "weights")

    @property
    def kv(self) -> MethodSpec | None:
        return next((p for p in self.parts if p.component == "kv-cache"), None)


def weights_name(method: str) -> str:
    """A recipe's weight method by name: `bnb-nf4+kv-int4` → `bnb-nf4` (a method alone: itself)."""
    return method.split("+")[0]


def parse_recipe(text: str, known: Callable[[str], MethodSpec | None]) -> Recipe:
    """Parse `a` or `a+b`, each name looked up by `known` (the registry's `spec`); unknown names are a UserError."""
    names = [n.strip() for n in text.split("+") if n.strip()]
    if not names:
        raise UserError(f"empty method name {text!r}", field="methods")
    parts = []
    for name in names:
        found = known(name)
        if found is None:
            raise UserError(f"unknown method {name!r}; run `qadvisor methods` to list them", field="methods")
        parts.append(found)
    recipe = Recipe(parts=tuple(parts))
    check_recipe(recipe)
    return recipe


def check_recipe(recipe: Recipe) -> None:
    """Explain why a stack cannot run rather than stacking tools that conflict."""
    weights = [p for p in recipe.parts if p.component == "weights"]
    kv = [p for p in recipe.parts if p.component == "kv-cache"]
    if not weights and kv:
        raise UserError(f"{recipe.name} quantizes the KV cache only: stack it on a weight method, e.g. "
                        f"fp32+{kv[0].name} or bnb-nf4+{kv[0].name}", field="kv")
    if len(weights) != 1:
        names = ", ".join(p.name for p in weights) or "none"
        raise UserError(
            f"{recipe.name}: a recipe needs exactly one weight method (got {names}); two weight quantizers "
            "would each replace the same Linear layers, so they cannot stack", field="methods"
        )
    if len(kv) > 1:
        raise UserError(f"{recipe.name}: at most one KV-cache method; two would quantize the same cache twice", field="kv")
    if kv and weights[0].backend == "llamacpp":
        raise UserError(f"{recipe.name}: llama.cpp keeps its own KV cache inside its runtime (its type_k / type_v "
                        "settings), so transformers' quantized cache cannot attach to a GGUF model", field="kv")
