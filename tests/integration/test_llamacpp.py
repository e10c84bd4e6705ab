"""llama.cpp's greedy step (no tensors per token) must pick the tokens the logits of its HF-style call pick."""

import torch

from qadvisor.core.metrics import timed_greedy
from qadvisor.core.modelio import shipped_model_dir
from qadvisor.quantizers import registry
from qadvisor.quantizers.base import TrialContext


def test_greedy_steps_follow_the_logits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the backend's scratch folder goes to the working folder
    spec = registry.parse_methods("gguf-q8_0")[0].weights
    backend, ctx = registry.backend_for(spec), TrialContext(threads=2, max_tokens=64)
    backend.save(backend.quantize(shipped_model_dir(), spec, ctx), spec, tmp_path)
    model = backend.load(tmp_path, spec, ctx)
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

    first_s, rest_s = timed_greedy(model, prompt, 8, "cpu")  # takes the native path
    assert first_s > 0 and rest_s > 0
