import math
import time

import pytest
import torch

from qadvisor.core.measure import metrics


@pytest.fixture(scope="module")
def tiny_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return Qwen2ForCausalLM(config).eval()



class _QuietWatch:
    """A CPU nobody else uses: these tests count generations, and a busy machine would time a window twice."""

    def __init__(self, threads):
        pass

    def share(self) -> float:
        return 0.0


@pytest.fixture(autouse=True)
def _quiet_cpu(monkeypatch):
    monkeypatch.setattr(metrics, "CpuWatch", _QuietWatch)

def test_eval_windows_shape_and_short_text():
    w = metrics.eval_windows(list(range(1000)), window=100, count=4)
    assert w.shape == (4, 100) and w[1, 0] == 100
    with pytest.raises(ValueError, match="too short"):
        metrics.eval_windows(list(range(50)), window=100, count=4)


def test_uniform_model_has_vocab_perplexity():
    windows = torch.randint(0, 10, (2, 9))
    uniform = torch.full((2, 8, 10), -math.log(10))
    assert metrics.perplexity(uniform, windows) == pytest.approx(10.0)


def test_reference_against_itself_is_lossless(tiny_model):
    windows = torch.randint(0, 97, (2, 16))
    ref = metrics.logprobs(tiny_model, windows, "cpu")
    acc = metrics.accuracy(tiny_model, windows, ref, "cpu")
    assert acc.kl_mean == pytest.approx(0.0, abs=1e-6)
    assert acc.top1_agreement == 1.0
    assert acc.ppl == pytest.approx(metrics.perplexity(ref, windows), rel=1e-5)


def test_perturbed_model_loses_accuracy(tiny_model):
    import copy

    windows = torch.randint(0, 97, (2, 16))
    ref = metrics.logprobs(tiny_model, windows, "cpu")
    noisy = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    acc = metrics.accuracy(noisy, windows, ref, "cpu")
    assert acc.kl_mean > 1e-3 and acc.top1_agreement < 1.0


def test_the_first_forward_passs_extra_time_is_measured_apart(tiny_model):
    class CompilesOnFirstCall(torch.nn.Module):  # as gptq-int2's torch.compile does
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, ids, **kw):
            self.calls += 1
            time.sleep(0.3 if self.calls == 1 else 0.01)
            return tiny_model(ids, **kw)

    windows = torch.randint(0, 97, (3, 16))
    ref = metrics.logprobs(tiny_model, windows, "cpu")
    assert metrics.accuracy(CompilesOnFirstCall(), windows, ref, "cpu").first_call_extra_s >= 0.25
    assert metrics.accuracy(tiny_model, windows, ref, "cpu").first_call_extra_s < 0.25


def test_speed_reports_positive_medians(tiny_model):
    s = metrics.speed(tiny_model, torch.randint(0, 97, (8,)), new_tokens=4, repeats=3, device="cpu")
    assert s.prefill_tok_s > 0 and s.decode_tok_s > 0 and s.ttft_ms > 0
    assert s.decode_tok_s_spread >= 0


class _Stepper:
    """A model that picks its greedy token itself (the llama.cpp protocol): it records each generation's steps."""

    def __init__(self, step_s: float = 0.0):
        self.lengths: list[int] = []
        self.step_s = step_s

    def greedy_step(self, ids, fresh=False):
        if fresh:
            self.lengths.append(0)
        self.lengths[-1] += 1
        time.sleep(self.step_s)
        return 1


def test_speed_warms_up_with_two_short_generations_then_times_full_ones():
    model = _Stepper()
    s = metrics.speed(model, torch.arange(8), new_tokens=12, repeats=3, device="cpu")
    assert model.lengths == [metrics.MIN_DECODE_TOKENS] * 2 + [12, 12, 12]
    assert s.repeats == 3 and s.decode_tokens == 12


def test_slow_steps_shorten_the_timed_runs_to_the_measuring_time_not_below_eight_tokens():
    model = _Stepper(step_s=0.02)  # 3 runs of 32 tokens would take 1.9 s
    started = time.perf_counter()
    s = metrics.speed(model, torch.arange(8), new_tokens=32, repeats=3, device="cpu", min_measure_s=0.6)
    assert time.perf_counter() - started >= 0.6
    assert model.lengths[2:] == [s.decode_tokens] * s.repeats and s.repeats in (3, 4)
    assert metrics.MIN_TIMED_TOKENS <= s.decode_tokens <= 0.2 / 0.02 + 1  # a third of 0.6 s each
    crawl = _Stepper(step_s=0.05)
    assert metrics.speed(crawl, torch.arange(8), new_tokens=32, repeats=3, device="cpu",
                         min_measure_s=0.3).decode_tokens == metrics.MIN_TIMED_TOKENS


def test_a_minimum_measuring_time_adds_repeats_until_the_timed_runs_add_up_to_it():
    model = _Stepper(step_s=0.005)  # a 12-token run takes at least 0.06 s
    started = time.perf_counter()
    s = metrics.speed(model, torch.arange(8), new_tokens=12, repeats=3, device="cpu", min_measure_s=0.5)
    assert time.perf_counter() - started >= 0.5 and model.lengths[2:] == [12] * s.repeats
    assert 3 < s.repeats <= 0.5 / (12 * 0.005) + 1  # no more than the last run that crossed 0.5 s


def test_the_kv_cache_is_measured_at_the_full_length_whatever_the_timed_runs_decoded(tiny_model):
    prompt = torch.randint(0, 97, (8,))
    sizes = []
    metrics.timed_greedy(tiny_model, prompt, 12, "cpu", sizes)  # a real generation of 12 new tokens
    assert metrics.kv_bytes_after(tiny_model, prompt, 12, "cpu") == sizes[0]
    short = metrics.speed(tiny_model, prompt, new_tokens=12, repeats=1, device="cpu", budget_s=1e-9)
    assert short.decode_tokens < 12 and short.kv_cache_bytes == sizes[0]
    assert metrics.kv_bytes_after(_Stepper(), prompt, 12, "cpu") is None  # llama.cpp's is its own


def test_tensor_bytes_counts_tied_weights_once(tiny_model):
    expected = sum(t.numel() * t.element_size() for t in {id(p): p for p in tiny_model.parameters()}.values())
    expected += sum(b.numel() * b.element_size() for b in tiny_model.buffers() if b.is_floating_point() and b.dim())
    from qadvisor.quantizers.tensors import tensor_bytes

    assert tensor_bytes(tiny_model) <= expected
    params_only = sum(p.numel() * p.element_size() for p in tiny_model.parameters())
    assert tensor_bytes(tiny_model) >= params_only


def test_a_time_budget_cuts_decode_tokens_but_never_below_four(tiny_model):
    prompt = torch.randint(0, 97, (8,))
    assert metrics.speed(tiny_model, prompt, new_tokens=12, repeats=1, device="cpu").decode_tokens == 12
    tight = metrics.speed(tiny_model, prompt, new_tokens=12, repeats=1, device="cpu", budget_s=1e-9)
    assert tight.decode_tokens == metrics.MIN_DECODE_TOKENS
    roomy = metrics.speed(tiny_model, prompt, new_tokens=12, repeats=1, device="cpu", budget_s=60.0)
    assert roomy.decode_tokens == 12


def test_prefill_asks_for_the_last_positions_logits_only(tiny_model):
    seen = []
    forward = tiny_model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("logits_to_keep", 0))
        return forward(*args, **kwargs)

    tiny_model.forward = spy
    try:
        import inspect

        spy.__signature__ = inspect.signature(forward)  # the metrics look the argument up on forward
        metrics.timed_greedy(tiny_model, torch.randint(0, 97, (8,)), 3, "cpu")
    finally:
        del tiny_model.forward
    assert seen[0] == 1  # the prompt: generation needs only its last position's logits


def test_side_by_side_times_every_model_in_turn_with_the_same_token_count(tiny_model):
    """Rounds alternate direction; each model runs once a round after its two warm-ups, and all decode as many tokens
    as the slowest fits in the budget."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    deeper = Qwen2ForCausalLM(config).eval()
    calls = []
    for name, model in (("shallow", tiny_model), ("deep", deeper)):
        forward = model.forward

        def spy(*args, _name=name, _forward=forward, **kwargs):
            if args[0].shape[1] > 1:  # a prompt: a new generation starts
                calls.append(_name)
            return _forward(*args, **kwargs)

        import inspect

        spy.__signature__ = inspect.signature(forward)
        model.forward = spy
    try:
        speeds = metrics.side_by_side([tiny_model, deeper], torch.randint(0, 97, (8,)), most_tokens=10, repeats=3,
                                      device="cpu", budget_s=60.0)
    finally:
        del tiny_model.forward, deeper.forward
    assert calls == ["shallow"] * 2 + ["deep"] * 2 + ["shallow", "deep", "deep", "shallow", "shallow", "deep"]
    assert [s.decode_tokens for s in speeds] == [10, 10]
    assert all(s.decode_tok_s > 0 and s.prefill_tok_s > 0 for s in speeds)
