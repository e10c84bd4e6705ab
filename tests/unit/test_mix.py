"""A GGUF mix made for a budget: its name's budget, the solver, the llama.cpp command that makes the same types, and
every budget that cannot work refused in one line before anything runs."""

import itertools

import pytest

from qadvisor.errors import UserError
from qadvisor.quantizers import ggufmix, mixsolver, registry
from qadvisor.quantizers.mixsolver import Matrix, parse_budget, solve
from qadvisor.schemas.architecture import Architecture
from qadvisor.schemas.mix import GgufMix
from tests.conftest import BUNDLED, run_cli
from tests.unit.test_bad_input import _assert_one_line_error


@pytest.mark.parametrize("name, kind, value", [
    ("gguf-mix@4.2bpw", "bpw", 4.2), ("gguf-mix@40GiB", "bytes", 40 * 2**30), ("gguf-mix@11800KiB", "bytes", 11800 * 1024),
    ("gguf-mix@12000000", "bytes", 12e6), ("gguf-mix@kl0.01", "kl", 0.01), ("gguf-mix@1.5gb", "bytes", 1.5e9)])
def test_a_budget_in_every_unit_max_size_takes(name, kind, value):
    budget = parse_budget(name)
    assert (budget.kind, budget.value, budget.table) == (kind, value, None)


def test_the_table_can_be_held_at_a_type():
    assert parse_budget("gguf-mix@4.5bpw:table=q8_0").table == "Q8_0"


@pytest.mark.parametrize("name, fragment", [
    ("gguf-mix@2bpw", "below the smallest type"), ("gguf-mix@33bpw", "above fp32"), ("gguf-mix@lots", "not 4.2bpw"),
    ("gguf-mix@kl0", "above 0"), ("gguf-mix@klx", "not a number"), ("gguf-mix@4bpw:table=Q9_9", "table type"),
    ("gguf-mix@", "write gguf-mix@<budget>")])
def test_a_budget_that_cannot_work_is_a_user_error(name, fragment):
    with pytest.raises(UserError, match=fragment):
        registry.parse_methods(name)


def test_the_registry_makes_a_spec_from_the_name():
    spec = registry.spec("gguf-mix@4.2bpw")
    assert (spec.backend, spec.bits, spec.scheme) == ("llamacpp", 4.2, "mix")
    assert registry.spec("gguf-nope") is None
    assert [r.name for r in registry.parse_methods("fp32,gguf-mix@kl0.01")] == ["fp32", "gguf-mix@kl0.01"]


def _brute(matrices, max_bytes):
    best = None
    for pick in itertools.product(*[list(m.added_kl) for m in matrices]):
        types = {m.name: k for m, k in zip(matrices, pick)}
        if mixsolver.matrix_bytes(matrices, types) <= max_bytes:
            kl = mixsolver.predicted_kl(matrices, types)
            best = kl if best is None else min(best, kl)
    return best


def test_the_solver_spends_bits_where_the_loss_falls_most():
    # one sensitive matrix and two that barely care: the bits go to the first
    kl = {"Q2_K": 1.0, "Q4_K": 0.3, "Q6_K": 0.05, "Q8_0": 0.01}
    matrices = [Matrix("hot", 256, 256, dict(kl)), *(Matrix(f"cold{i}", 256, 256, {k: v / 100 for k, v in kl.items()})
                                                     for i in range(2))]
    room = 256 * 256 * (8.5 + 2.625 * 2) / 8
    types = solve(matrices, max_bytes=room)
    assert types == {"hot": "Q8_0", "cold0": "Q2_K", "cold1": "Q2_K"}
    assert mixsolver.predicted_kl(matrices, types) == pytest.approx(_brute(matrices, room))


def test_the_solver_stays_near_the_best_on_random_problems():
    import random

    rng = random.Random(0)
    for _ in range(20):
        matrices = []
        for i in range(4):
            scale = rng.uniform(0.01, 1)
            kl = {k: scale * 2 ** (-2 * mixsolver.BITS[k]) * rng.uniform(0.8, 1.2) for k in mixsolver.candidates(256)}
            matrices.append(Matrix(f"m{i}", 64 * (i + 1), 256, kl))
        room = mixsolver.smallest_bytes(matrices) * rng.uniform(1.2, 2.5)
        types = solve(matrices, max_bytes=room)
        assert mixsolver.matrix_bytes(matrices, types) <= room
        assert mixsolver.predicted_kl(matrices, types) <= 1.5 * _brute(matrices, room)


def test_a_kl_ceiling_takes_the_least_bytes_that_reach_it():
    kl = {"Q2_K": 1.0, "Q4_K": 0.3, "Q6_K": 0.05, "Q8_0": 0.01}
    matrices = [Matrix(f"m{i}", 256, 256, dict(kl)) for i in range(3)]
    types = solve(matrices, max_kl=1.6)
    assert mixsolver.predicted_kl(matrices, types) <= 1.6
    assert sorted(types.values()) == ["Q2_K", "Q4_K", "Q4_K"]


def test_rows_a_k_quant_does_not_tile_take_32_block_types_only():
    assert mixsolver.candidates(384) == ["Q4_0", "IQ4_NL", "Q5_0", "Q5_1", "Q8_0", "F16"]
    assert "Q2_K" in mixsolver.candidates(1024)


def test_a_budget_below_this_models_smallest_mix_stops_the_run_before_measuring():
    _assert_one_line_error(run_cli("--auto", "--methods", "fp32,gguf-mix@4.0bpw"), "smallest mix is 4.12 bits")
    _assert_one_line_error(run_cli("--auto", "--methods", "gguf-mix@1MiB"), "smallest mix needs")


def test_the_bundled_models_layout_is_every_matrix_once():
    arch = Architecture.from_config("bundled", __import__("json").loads((BUNDLED / "config.json").read_text()))
    names = [name for name, _, _ in ggufmix.layout(arch)]
    assert len(names) == len(set(names)) == 8 * 7 + 1  # tied: token_embd is the head too
    assert ("blk.0.ffn_down.weight", 384, 1024) in ggufmix.layout(arch)


def test_the_llama_quantize_command_gives_every_tensor_its_type():
    import re

    mix = GgufMix(budget="x", tensor_types={"blk.0.attn_q.weight": "Q4_0", "blk.1.attn_q.weight": "Q4_0",
                                            "blk.2.attn_q.weight": "Q8_0", "token_embd.weight": "Q5_0"},
                  bits_per_weight=5, matrix_bytes=1, predicted_kl=0.1)
    for name, kind in mix.tensor_types.items():
        matched = [k for pattern, k in mix.overrides() if re.search(pattern, name)]
        assert matched == [kind]
    assert "--tensor-type '^token_embd\\.weight$=q5_0'" in mix.quantize_command()


def _result(method, size, kl, mix=None):
    from qadvisor.schemas.result import TrialResult

    return TrialResult(method=method, backend="llamacpp", bits=4, status="ok", size_bytes=size, kl_mean=kl, mix=mix,
                       decode_tok_s=100.0)


def _mix(types=None):
    types = types or {"blk.0.attn_q.weight": "Q4_0", "blk.1.ffn_down.weight": "Q2_K", "token_embd.weight": "Q8_0"}
    return GgufMix(budget="x", tensor_types=types, bits_per_weight=5, matrix_bytes=1, predicted_kl=3e-4,
                   added_kl={name: {kind: 1e-4} for name, kind in types.items()})


def test_the_advice_names_the_uniform_recipe_a_mix_beats_or_loses_to():
    from qadvisor.core.advise.mixes import advice_line, against_uniform

    results = [_result("gguf-q3_k_m", 1000, 7e-4), _result("gguf-q4_k_m", 1200, 2e-4),
               _result("gguf-mix@1000", 990, 3.5e-4, _mix()), _result("gguf-mix@1200", 1190, 3e-4, _mix())]
    assert "beats it: within gguf-q3_k_m's size" in against_uniform(results[2], results)
    assert "KL 50 % lower" in against_uniform(results[2], results)
    assert "does not beat it" in against_uniform(results[3], results) and "KL 50 % higher" in against_uniform(
        results[3], results)
    assert advice_line("gguf-q3_k_m", results).startswith("gguf-mix@1000 beats it")  # a uniform pick hears of the mix
    assert advice_line("gguf-q4_k_m", results) == ""  # the mix made within its size lost more


def test_max_size_gives_a_bare_mix_its_budget_and_joins_the_default_methods():
    from qadvisor.app.auto import with_mix_budget
    from qadvisor.app.options import RunOptions, priority_options

    said = []
    sized = priority_options(max_size="11800KiB").priorities()
    bare = with_mix_budget(RunOptions(methods=["fp32", "gguf-mix"]), sized, said.append)
    assert bare.methods == ["fp32", f"gguf-mix@{11800 * 1024}"]
    default = with_mix_budget(RunOptions(), sized, said.append)
    assert default.methods[-1] == f"gguf-mix@{11800 * 1024}" and "joins the default methods" in said[-1]
    small = with_mix_budget(RunOptions(), priority_options(max_size="1MiB").priorities(), said.append)
    assert small.methods == RunOptions().methods and "no GGUF mix for --max-size" in said[-1]
    with pytest.raises(UserError, match="takes its budget from --max-size"):
        with_mix_budget(RunOptions(methods=["gguf-mix"]), priority_options().priorities(), said.append)


def test_a_bare_mix_without_max_size_is_one_line():
    _assert_one_line_error(run_cli("--auto", "--methods", "fp32,gguf-mix"), "takes its budget from --max-size")


def test_the_report_draws_the_trade_off_and_each_mixs_map(tmp_path):
    from qadvisor.app import plots
    from qadvisor.schemas.export import RunExport

    if not plots.available():
        pytest.skip("matplotlib is not installed (the report then says how to get the pictures)")
    results = [_result("gguf-q3_k_m", 1000, 7e-4), _result("gguf-mix@1000", 990, 3.5e-4, _mix())]
    export = RunExport.model_construct(results=results)
    made = plots.write_plots(export, tmp_path / "run.md")
    assert [name for _, name in made] == ["run.tradeoff.png", "run.mix-1.png"]
    assert all((tmp_path / name).read_bytes()[:4] == b"\x89PNG" for _, name in made)
    kl, kinds, tables = plots.cells(results[1])
    assert kinds[0][0] == "Q4_0" and kinds[1][6] == "Q2_K" and tables == ["token_embd Q8_0 (KL 0.0001)"]


def test_without_the_targets_weights_the_advice_says_no_mix_is_tailored_to_it():
    from qadvisor.core.advise.target import _accuracy
    from tests.samples import sample_export

    export = sample_export()
    reason = _accuracy("Qwen2.5-72B", _result("gguf-mix@4.5bpw", 990, 3.5e-4, _mix()), export, "size: estimate")["reason"]
    assert "without Qwen2.5-72B's weights (--plan-for DIR) none is tailored to it" in reason
