"""The backends and their methods. Listing is cheap: a backend's library is imported only to run it."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from functools import cache

from qadvisor.errors import UserError
from qadvisor.schemas.architecture import FAMILIES
from qadvisor.schemas.hardware import BackendAvailability
from qadvisor.schemas.method import MethodSpec, Recipe, parse_recipe
from qadvisor.quantizers.base import Backend

BACKEND_MODULES = ("native", "bnb", "gptq", "awq", "hqq", "quanto", "torchao", "llamacpp", "kvcache")
# A fake backend for fast UI tests only; never listed unless a test switches it on.
MOCK_ENV = "QADVISOR_ENABLE_MOCK_BACKEND"

# A spread over high, medium and low compression from several backends that finishes in minutes on 2 cores.
DEFAULT_METHODS = ("fp32", "bnb-int8", "bnb-nf4", "gptq-int4", "gptq-int2", "hqq-int4", "quanto-int8", "quanto-int4",
                   "torchao-int8", "gguf-q8_0", "gguf-q4_k_m", "gguf-q2_k")


ENTRY_POINTS = "qadvisor.backends"  # a backend from another package: one module whose BACKEND is a Backend


@cache
def backends() -> dict[str, Backend]:
    """qadvisor's own backends, then any registered under the `qadvisor.backends` entry-point group (a module
    path each): adding a backend is that module and its one registration, nothing more."""
    modules = [f"qadvisor.quantizers.{m}" for m in BACKEND_MODULES]
    if os.environ.get(MOCK_ENV) == "1":
        modules.append("qadvisor.quantizers.mock")
    modules += [ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)]
    found = {}
    for module in modules:
        backend = importlib.import_module(module).BACKEND
        if backend.name in found:
            raise UserError(f"two backends are named {backend.name!r} ({module} and another): rename one")
        found[backend.name] = backend
    return found


def methods() -> dict[str, MethodSpec]:
    return {spec.name: spec for backend in backends().values() for spec in backend.methods}


def spec(name: str) -> MethodSpec | None:
    """A catalogue method, or one a backend makes from a name that carries its parameters (gguf-mix@4.2bpw); None
    where no backend knows the name."""
    known = methods().get(name)
    if known is not None:
        return known
    return next(filter(None, (backend.method_named(name) for backend in backends().values())), None)


def method_forms() -> list[MethodSpec]:
    """The methods whose names carry their parameters, as `qadvisor methods` shows them (gguf-mix@<budget>)."""
    return [form for backend in backends().values() for form in backend.method_forms]


def backend_for(spec: MethodSpec) -> Backend:
    return backends()[spec.backend]


def parse_methods(text: str) -> list[Recipe]:
    """`a,b,c` → recipes; unknown names and duplicates are UserErrors."""
    recipes = [parse_recipe(part, spec) for part in text.split(",") if part.strip()]
    if not recipes:
        raise UserError("no methods given", field="methods")
    names = [r.name for r in recipes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"method listed twice: {', '.join(duplicates)}", field="methods")
    return recipes


def kv_methods() -> list[str]:
    return [name for name, spec in methods().items() if spec.component == "kv-cache"]


def _stack_problem(name: str, kv: str) -> str:
    """Why `name+kv` cannot run ('' when it can), from the same check every recipe goes through."""
    try:
        parse_recipe(f"{name}+{kv}", spec)
    except UserError as exc:
        return str(exc).split(": ", 1)[-1]
    return ""


def stack(names: list[str], kv: str | None) -> list[str]:
    """Each weight method stacked with `kv` (None: unchanged). Conflicts are one UserError naming every method
    that cannot take it and why: nothing is dropped or stacked silently."""
    if not kv:
        return list(names)
    refused: dict[str, list[str]] = {}
    for name in names:
        why = _stack_problem(name, kv)
        if why:
            refused.setdefault(why, []).append(name)
    if refused:
        raise UserError("; ".join(f"{kv} cannot stack on {', '.join(ms)}: {why}" for why, ms in refused.items())
                        + f". Deselect {'them' if sum(map(len, refused.values())) > 1 else 'it'} or stack no KV method",
                        field="kv")
    return [f"{name}+{kv}" for name in names]


def kv_compatibility() -> dict[str, str]:
    """For each weight method, '' when every KV method stacks on it, else why not."""
    return {name: next((why for kv in kv_methods() if (why := _stack_problem(name, kv))), "")
            for name, spec in methods().items() if spec.component == "weights"}


def availability(has_cuda: bool) -> list[BackendAvailability]:
    rows = []
    for backend in backends().values():
        ok, reason = backend.available(has_cuda)
        rows.append(BackendAvailability(backend=backend.name, available=ok, reason=reason,
                                        methods=[m.name for m in backend.methods]))
    return rows


def method_available(spec: MethodSpec, has_cuda: bool) -> tuple[bool, str]:
    return backend_for(spec).method_available(spec, has_cuda)


def check_for_model(recipes: list[Recipe], arch) -> None:
    """A UserError, before anything runs, for a method that cannot be made for this model as asked."""
    for recipe in recipes:
        for part in recipe.parts:
            if part.source is None:
                backend_for(part).model_problem(part, arch)


def recipe_runs_on(recipe: Recipe, family: str, moe: bool) -> str:
    """Why a recipe cannot quantize a model of `family` ('' where every part can), naming the part."""
    for spec in recipe.parts:
        why = backend_for(spec).family_problem(spec, family, moe)
        if why:
            return f"{spec.name} on {FAMILIES[family]}: {why}"
    return ""


# an MoE model of each family that has one, to ask a backend about its experts
MOE_FAMILIES = ("qwen3_moe", "qwen3_next", "qwen3_5_moe")


def families_refused(spec: MethodSpec) -> dict[str, str]:
    """The families (their labels) a method cannot quantize, with why; a family with dense and MoE models is named
    for its MoE models where only those are refused."""
    backend = backend_for(spec)
    return {FAMILIES[family]: why for family in FAMILIES
            if (why := backend.family_problem(spec, family, family in MOE_FAMILIES))}


def recipe_available(recipe: Recipe, has_cuda: bool) -> tuple[bool, str]:
    """Every part must run here; the reason names the first that cannot."""
    for spec in recipe.parts:
        ok, reason = method_available(spec, has_cuda)
        if not ok:
            return False, f"{spec.name}: {reason}" if len(recipe.parts) > 1 else reason
    return True, ""
