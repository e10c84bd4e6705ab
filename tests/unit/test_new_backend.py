"""A new backend is one file and one registration: a toy backend, written here as a module of its own and registered
under the `qadvisor.backends` entry-point group, is found by every part of qadvisor that lists, checks, plans,
sizes or doctors methods — with nothing edited in qadvisor itself."""

import importlib.metadata

import pytest

from qadvisor.quantizers import registry

TOY = '''
from qadvisor.quantizers.base import Backend
from qadvisor.quantizers.storage import grouped
from qadvisor.schemas.method import MethodSpec


class ToyBackend(Backend):
    name = "toy"
    stand_in = "toy-int4"
    install_hint = "pip install toy-quant"
    methods = (MethodSpec(name="toy-int4", backend="toy", bits=4, scheme="int4", group_size=64,
                          summary="a toy 4-bit format"),
               MethodSpec(name="toy-int3", backend="toy", bits=3, scheme="int3", group_size=64,
                          summary="a toy 3-bit format"),)
    storage = (grouped("toy-int3", 3, 64, 2, 16, "3/8·in·out + fp16 scale and zero per 64 (the toy's own layout)"),)


BACKEND = ToyBackend()
'''


def _register(tmp_path, monkeypatch, module: str, source: str) -> None:
    """`source` written as `module`.py and registered as another package's setup would register it."""
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    original = importlib.metadata.entry_points

    def entry_points(**select):
        if select.get("group") == registry.ENTRY_POINTS:
            return [importlib.metadata.EntryPoint("toy", module, registry.ENTRY_POINTS)]
        return original(**select)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    registry.backends.cache_clear()


@pytest.fixture
def toy_backend(tmp_path, monkeypatch):
    _register(tmp_path, monkeypatch, "toy_backend", TOY)
    yield
    registry.backends.cache_clear()


def test_a_backend_in_one_file_is_found_everywhere(toy_backend):
    from qadvisor.app.doctor import stand_in_methods
    from qadvisor.app.views import method_rows
    from qadvisor.core import architectures
    from qadvisor.core.measure import memory
    from qadvisor.core.plan import planner
    from qadvisor.core.plan.slices import sliceable

    assert [r.name for r in registry.parse_methods("toy-int4,fp32")] == ["toy-int4", "fp32"]
    row = next(r for r in method_rows(has_cuda=False) if r["name"] == "toy-int4")
    assert row["backend"] == "toy" and row["available"] and row["summary"] == "a toy 4-bit format"
    assert next(b for b in registry.availability(False) if b.backend == "toy").methods == ["toy-int4", "toy-int3"]
    assert stand_in_methods()["toy"] == "toy-int4"  # doctor runs it
    arch = architectures.resolve_architecture("Qwen2.5-7B")
    target = planner.parse_target("A100-80GB")
    plan = planner.plan(arch, target, methods=["toy-int4", "gptq-int4"])
    toy, gptq = plan.plans
    assert toy.method == "toy-int4" and 0.9 < toy.weights_bytes / gptq.weights_bytes < 1.1  # 4 bits, group 64
    assert "estimate: from its catalogue entry" in plan.formulas["bytes(in,out) toy-int4"]
    declared = planner.plan(arch, target, methods=["toy-int3"])  # a storage entry: the planner sizes the toy's layout
    assert plan.formulas.get("bytes(in,out) toy-int3") is None
    assert declared.formulas["bytes(in,out) toy-int3"] == "3/8·in·out + fp16 scale and zero per 64 (the toy's own layout)"
    assert sliceable("toy-int4")
    assert memory.need_bytes("toy", 10**6, 1000, 0) > 0  # no peak measured yet: the largest factor, an upper bound


def test_two_backends_of_one_name_are_one_clear_error(tmp_path, monkeypatch):
    from qadvisor.errors import UserError

    _register(tmp_path, monkeypatch, "toy_twin", TOY.replace('name = "toy"', 'name = "bnb"'))
    try:
        with pytest.raises(UserError, match="two backends are named 'bnb'"):
            registry.backends()
    finally:
        registry.backends.cache_clear()
