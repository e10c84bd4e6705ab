import pytest

from qadvisor.errors import UserError
from qadvisor.schemas.method import MethodSpec, Recipe, check_recipe, parse_recipe
from qadvisor.quantizers import registry


def test_every_issue_method_is_registered():
    names = set(registry.methods())
    expected = {"fp32", "bf16", "bnb-int8", "bnb-nf4", "bnb-fp4", "gptq-int8", "gptq-int4", "gptq-int3", "gptq-int2",
                "hqq-int4", "hqq-int3", "hqq-int2", "quanto-int8", "quanto-int4", "quanto-int2", "torchao-int8"}
    assert expected <= names
    assert not any(n.startswith("mock") for n in names), "the mock backend must stay hidden from users"


def test_default_set_spans_backends_and_compression():
    specs = [registry.methods()[n] for n in registry.DEFAULT_METHODS]
    assert len({s.backend for s in specs if s.bits < 16}) >= 3
    assert {8, 4, 2} <= {int(s.bits) for s in specs}


def test_parse_methods_rejects_unknown_and_duplicates():
    with pytest.raises(UserError, match="unknown method 'gptq-int5'"):
        registry.parse_methods("gptq-int5")
    with pytest.raises(UserError, match="listed twice"):
        registry.parse_methods("bnb-int8,bnb-int8")
    assert [r.name for r in registry.parse_methods("fp32, bnb-nf4")] == ["fp32", "bnb-nf4"]


def test_two_weight_methods_do_not_stack():
    with pytest.raises(UserError, match="cannot stack"):
        parse_recipe("bnb-nf4+gptq-int4", registry.spec)


def test_kv_part_is_checked_not_silently_stacked():
    kv = MethodSpec(name="kv-int4", backend="kv", bits=4, scheme="int4", component="kv-cache")
    w = registry.methods()["bnb-nf4"]
    check_recipe(Recipe(parts=(w, kv)))  # one weight method plus one KV method is a valid shape
    with pytest.raises(UserError, match="at most one KV-cache"):
        check_recipe(Recipe(parts=(w, kv, kv)))
    assert Recipe(parts=(w, kv)).name == "bnb-nf4+kv-int4"


def test_torchao_int4_is_gpu_only():
    spec = registry.methods()["torchao-int4"]
    ok, reason = registry.method_available(spec, has_cuda=False)
    assert not ok and "CUDA" in reason


def test_kv_stacks_are_explained():
    assert [r.name for r in registry.parse_methods("bnb-nf4+kv-int4")] == ["bnb-nf4+kv-int4"]
    assert registry.parse_methods("quanto-int4+kv-int2")[0].kv.name == "kv-int2"
    with pytest.raises(UserError, match="KV cache only: stack it on a weight method"):
        registry.parse_methods("kv-int4")
    with pytest.raises(UserError, match="llama.cpp keeps its own KV cache"):
        registry.parse_methods("gguf-q4_k_m+kv-int4")
    with pytest.raises(UserError, match="at most one KV-cache method"):
        registry.parse_methods("fp32+kv-int4+kv-int2")


def test_stacking_a_kv_method_on_a_selection():
    assert registry.stack(["fp32", "bnb-nf4"], None) == ["fp32", "bnb-nf4"]
    assert registry.stack(["fp32", "bnb-nf4"], "kv-int4") == ["fp32+kv-int4", "bnb-nf4+kv-int4"]
    with pytest.raises(UserError, match=r"kv-int4 cannot stack on gguf-q8_0, gguf-q2_k: llama.cpp keeps its own KV"):
        registry.stack(["fp32", "gguf-q8_0", "gguf-q2_k"], "kv-int4")
    compat = registry.kv_compatibility()
    assert compat["bnb-nf4"] == "" and "llama.cpp" in compat["gguf-q4_k_m"]


def test_one_method_table_every_runnable_method_is_planned_alike():
    """The planner's formats and the backends' specs describe each method once: same name, bits and group size."""
    from qadvisor.core.plan.planner import formats

    for name, spec in registry.methods().items():
        if spec.component != "weights":
            continue
        fmt = formats().get(name)
        assert fmt is not None, f"{name} has no planner entry"
        assert (fmt.bits, fmt.group_size) == (spec.bits, spec.group_size), name
    for backend in registry.backends().values():  # a backend declares the storage of its own methods only
        assert {f.method for f in backend.storage} <= {m.name for m in backend.methods}, backend.name
