"""llama.cpp through its adapter: the greedy step (no tensors per token) picks the tokens the logits of its HF-style
call pick, and the weight bytes are the GGUF's tensor table's."""

import pytest
import torch

from qadvisor.core.measure.metrics import timed_greedy
from qadvisor.core.measure.modelio import bundled_model_dir
from qadvisor.quantizers import registry
from qadvisor.quantizers.base import TrialContext
from qadvisor.schemas.export import load_export
from tests.conftest import run_cli


def _gguf(method: str, folder):
    """The bundled model quantized by `method`, saved in `folder` and loaded back: (backend, model)."""
    spec = registry.parse_methods(method)[0].weights
    backend, ctx = registry.backend_for(spec), TrialContext(threads=2, max_tokens=64)
    backend.save(backend.quantize(bundled_model_dir(), spec, ctx), spec, folder)
    return backend, backend.load(folder, spec, ctx)


def test_greedy_steps_follow_the_logits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the backend's scratch folder goes to the working folder
    model = _gguf("gguf-q8_0", tmp_path)[1]
    prompt = torch.arange(100, 132)

    native = [model.greedy_step(prompt.tolist(), fresh=True)]
    for _ in range(7):
        native.append(model.greedy_step([native[-1]]))
    out = model(prompt[None], use_cache=True)
    generic = [int(out.logits[0, -1].argmax())]
    for _ in range(7):
        out = model(torch.tensor([[generic[-1]]]), use_cache=True, cache=out.cache)
        generic.append(int(out.logits[0, -1].argmax()))
    assert native == generic
    model.llm.reset()  # and llama-cpp-python's own greedy generation, which decodes through its `eval`
    own = model.llm.generate(prompt.tolist(), temp=0.0, reset=True)
    assert [next(own) for _ in range(8)] == native

    first_s, rest_s = timed_greedy(model, prompt, 8, "cpu")  # takes the native path
    assert first_s > 0 and rest_s > 0


def test_weight_bytes_are_the_gguf_tensor_tables(tmp_path, monkeypatch):
    import gguf

    monkeypatch.chdir(tmp_path)
    backend, model = _gguf("gguf-q4_k_m", tmp_path)
    table = sum(int(t.n_bytes) for t in gguf.GGUFReader(str(tmp_path / "model.gguf")).tensors)
    assert backend.memory_bytes(model) == table


def test_the_amx_probe_gives_a_verdict_and_the_model_runs_either_way(tmp_path, monkeypatch):
    """On a CPU whose llama.cpp build crashes in its AMX kernels (SIGILL on one machine, SIGSEGV on another) the
    adapter runs in its first safe configuration; elsewhere as built. Every level picks the same tokens."""
    from qadvisor.quantizers import ggufwrite, llamacpp, llamacpp_amx

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(llamacpp_amx, "_levels", {})
    model = _gguf("gguf-q8_0", tmp_path)[1]
    path = tmp_path / ggufwrite.GGUF_FILE
    died = llamacpp_amx._probe(path, 2)
    assert died is not None  # it ran (''), or died of a fatal signal: no other ending
    expected = 1 if died and llamacpp_amx.amx_in_build() else 0
    assert llamacpp_amx.probed_level(path, 2, tmp_path / "probes") == expected
    probed = llamacpp.LlamaAdapter(path, 2, "cpu", 64, tmp_path / "probes")
    assert probed.safe_level == expected
    safe = [llamacpp.LlamaAdapter(path, 2, "cpu", 64, safe_level=level) for level in (1, 2)]
    prompt = list(range(100, 132))
    tokens = [m.greedy_step(prompt, fresh=True) for m in (model, probed, *safe)]
    assert tokens == [tokens[-1]] * 4


ROLES = {"attn_q": "q_proj", "attn_k": "k_proj", "attn_v": "v_proj", "attn_output": "o_proj", "ffn_gate": "gate_proj",
         "ffn_up": "up_proj", "ffn_down": "down_proj"}


@pytest.mark.parametrize("method, layers", [("gguf-q4_k_m", 16), ("gguf-q3_k_m", 16), ("gguf-q2_k", 16),
                                            ("gguf-q6_k", 16), ("gguf-q4_k_m", 80), ("gguf-q3_k_m", 80),
                                            ("gguf-q4_k_m-imat", 16), ("gguf-q2_k-imat", 80), ("gguf-iq4_xs", 80)])
def test_the_planner_gives_each_tensor_the_type_llama_cpp_gives_it(method, layers, tmp_path, monkeypatch):
    """quantizers.gguf_mix against llama.cpp's quantizer, tensor by tensor, on narrow models whose rows are multiples of
    256 but for one (the k-quants' mixes pick by layer position; 160-wide attention rows fall back); 80 layers is
    what llama.cpp calls a 70B Qwen2, whose attn_v gets one step more. The importance-matrix methods are written by
    qadvisor itself, in the types gguf_mix gives (their mix is llama.cpp's: the IQ4_XS case below checks it)."""
    monkeypatch.chdir(tmp_path)
    arch, model_dir = _mix_model(tmp_path, layers)
    spec = registry.parse_methods(method)[0].weights
    backend = registry.backend_for(spec)
    (tmp_path / "q").mkdir()
    context = TrialContext(threads=2, max_tokens=64, calibrate=False)  # random weights: no importance matrix
    backend.save(backend.quantize(model_dir, spec, context), spec, tmp_path / "q")
    _check_types(method, arch, tmp_path / "q" / "model.gguf", imatrix=True)


@pytest.mark.parametrize("layers", [16, 80])
def test_iq4_xs_has_llama_cpps_own_mix(layers, tmp_path):
    """llama.cpp's own quantizer asked for IQ4_XS without an importance matrix (its first eighth of ffn_down then
    Q5_K): the types gguf_mix gives that case, tensor by tensor, so the mix qadvisor writes with one is llama.cpp's."""
    import llama_cpp

    from qadvisor.quantizers import ggufwrite, llamacpp

    arch, model_dir = _mix_model(tmp_path, layers)
    full, out = tmp_path / "full.gguf", tmp_path / "iq4_xs.gguf"
    ggufwrite.to_gguf(model_dir, full)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = llamacpp.FTYPES["gguf-iq4_xs"], 2
    assert llama_cpp.llama_model_quantize(str(full).encode(), str(out).encode(), params) == 0
    _check_types("gguf-iq4_xs", arch, out, imatrix=False)


def _mix_model(tmp_path, layers):
    from qadvisor.core import architectures
    from qadvisor.core.measure import synthetic
    from qadvisor.schemas.architecture import Architecture

    vocab = architectures.resolve_architecture(str(bundled_model_dir())).vocab_size
    arch = Architecture(name="mix", hidden_size=256, intermediate_size=512, num_hidden_layers=layers,
                        num_attention_heads=4, num_key_value_heads=1, vocab_size=vocab,
                        tie_word_embeddings=layers < 80, head_dim=40)  # 80: an output tensor of its own, as 72B
    return arch, synthetic.build(arch, tmp_path / "mix", bundled_model_dir(), {})


def _check_types(method, arch, path, imatrix):
    import gguf

    from qadvisor.core.plan import planner
    from qadvisor.quantizers import gguf_mix

    tensors = gguf.GGUFReader(str(path)).tensors
    inputs = {role: n_in for role, n_in, _ in arch.layer_linears()}
    for t in tensors:
        parts = t.name.split(".")
        if parts[0] == "blk" and parts[2] in ROLES and parts[3] == "weight":
            role = ROLES[parts[2]]
            kind = gguf_mix.linear_type(method, role, int(parts[1]), arch.num_hidden_layers, arch, imatrix)
            assert t.tensor_type.name == gguf_mix.stored_type(kind, inputs[role]), t.name
    table = {t.name: gguf_mix.BITS[t.tensor_type.name] for t in tensors
             if t.name in ("token_embd.weight", "output.weight")}
    embed_bits, output_bits = gguf_mix.table_bits(method, arch)
    assert table == ({"token_embd.weight": embed_bits} if arch.tie_word_embeddings else
                     {"token_embd.weight": embed_bits, "output.weight": output_bits})
    if imatrix:  # the planner sizes the mix as made with an importance matrix
        held, _ = planner.weights_bytes(arch, planner.formats()[method], dense_bytes=4)
        assert held == sum(int(t.n_bytes) for t in tensors)  # norms and biases as llama.cpp keeps them: F32


def test_an_importance_matrix_lowers_q4_k_m_loss_in_a_file_llama_cpp_runs(tmp_path):
    """The imatrix methods: llama.cpp's own quantizer weighted by the calibration text's activations, the same
    types and bytes as without, read and run by llama.cpp (IQ4_XS too); Q4_K_M loses less with it on the bundled
    model."""
    out = tmp_path / "run.json"
    proc = run_cli("--auto", "--methods", "gguf-q4_k_m,gguf-q4_k_m-imat,gguf-iq4_xs", "--repeats", "2",
                   "--export", str(out), env={"QADVISOR_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = {x.method: x for x in load_export(out).results}
    assert all(x.status == "ok" for x in r.values()), [(x.method, x.reason) for x in r.values()]
    plain, imat = r["gguf-q4_k_m"], r["gguf-q4_k_m-imat"]
    assert abs(imat.size_bytes - plain.size_bytes) < 256  # the header's strings differ, no more
    assert imat.kl_mean < plain.kl_mean  # the matrix changed the rounding, for the better here
