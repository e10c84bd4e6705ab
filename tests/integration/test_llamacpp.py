"""llama.cpp through its adapter: the greedy step (no tensors per token) picks the tokens the logits of its HF-style
call pick, and the weight bytes are the GGUF's tensor table's."""

import torch

from qadvisor.core.metrics import timed_greedy
from qadvisor.core.modelio import shipped_model_dir
from qadvisor.quantizers import registry
from qadvisor.quantizers.base import TrialContext


def _gguf(method: str, folder):
    """The shipped model quantized by `method`, saved in `folder` and loaded back: (backend, model)."""
    spec = registry.parse_methods(method)[0].weights
    backend, ctx = registry.backend_for(spec), TrialContext(threads=2, max_tokens=64)
    backend.save(backend.quantize(shipped_model_dir(), spec, ctx), spec, folder)
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
    """On a CPU whose llama.cpp build crashes in its AMX kernels (SIGILL) the adapter runs without them and says so;
    elsewhere it runs as built, and without its extra buffers it picks the same tokens."""
    from qadvisor.quantizers import llamacpp, llamacpp_amx

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(llamacpp_amx, "_verdicts", {})
    model = _gguf("gguf-q8_0", tmp_path)[1]
    path = tmp_path / llamacpp.GGUF_FILE
    faults = llamacpp_amx._probe(path, 2)
    assert faults in (True, False)  # it ran, or died of SIGILL: no other ending
    assert llamacpp_amx.kernels_fault(path, 2, tmp_path / "probes") == (faults and llamacpp_amx.amx_in_build())
    probed = llamacpp.LlamaAdapter(path, 2, "cpu", 64, tmp_path / "probes")
    assert probed.notes == ([llamacpp_amx.NOTE] if faults and llamacpp_amx.amx_in_build() else [])
    with llamacpp_amx.without_extra_buffers(True):
        plain = llamacpp.LlamaAdapter(path, 2, "cpu", 64)
    prompt = list(range(100, 132))
    assert [m.greedy_step(prompt, fresh=True) for m in (model, probed, plain)] == [plain.greedy_step(prompt, fresh=True)] * 3
