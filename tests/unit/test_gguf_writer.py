"""The HF → GGUF writer for llama.cpp, read back with gguf's own reader (no llama.cpp needed)."""

import gguf

from qadvisor.core.measure.modelio import bundled_model_dir
from qadvisor.quantizers.ggufwrite import to_gguf


def test_bundled_model_as_gguf(tmp_path):
    out = tmp_path / "f32.gguf"
    to_gguf(bundled_model_dir(), out)
    reader = gguf.GGUFReader(str(out))
    names = {t.name for t in reader.tensors}
    # 8 layers × (2 norms + q/k/v weight and bias + o + gate/up/down) + embedding + final norm; tied: no output
    assert len(names) == 8 * 12 + 2 and "output.weight" not in names
    assert {"token_embd.weight", "output_norm.weight", "blk.7.ffn_down.weight", "blk.0.attn_q.bias"} <= names
    assert sum(t.n_elements for t in reader.tensors) == 15_740_288
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "qwen2"
    assert len(fields["tokenizer.ggml.tokens"].data) == 8192
    assert int(fields["qwen2.block_count"].parts[-1][0]) == 8


def test_pre_tokenizer_names():
    from qadvisor.quantizers.ggufwrite import _pre_tokenizer

    assert _pre_tokenizer({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}) == "gpt-2"
    qwen = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|..."}, "behavior": "Isolated"},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}}
    assert _pre_tokenizer(qwen) == "qwen2"


def test_matrices_are_written_bit_for_bit_in_bf16(tmp_path):
    import numpy as np
    import torch
    from safetensors import safe_open

    out = tmp_path / "model.gguf"
    to_gguf(bundled_model_dir(), out)
    tensors = {t.name: t for t in gguf.GGUFReader(str(out)).tensors}
    q = tensors["blk.0.attn_q.weight"]
    assert q.tensor_type == gguf.GGMLQuantizationType.BF16
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    with safe_open(str(bundled_model_dir() / "model.safetensors"), framework="pt") as f:
        want = f.get_tensor("model.layers.0.self_attn.q_proj.weight").view(torch.int16).numpy()
    assert np.array_equal(np.asarray(q.data).view(np.int16).reshape(want.shape), want)
