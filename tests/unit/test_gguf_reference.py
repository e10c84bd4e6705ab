"""An unquantized GGUF as the reference of checkpoints measured as shipped: the model folder it stands for holds its
tensors as they are, whole or split, and a quantized one is refused."""

import json

import pytest
from safetensors import safe_open

from qadvisor.core.measure import gguf_reference
from qadvisor.errors import UserError
from qadvisor.quantizers.ggufwrite import to_gguf
from tests.conftest import BUNDLED
from tests.samples import split_gguf


def _tensors(folder):
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            out.update({key: f.get_tensor(key) for key in f.keys()})
    return out


def test_a_split_bf16_gguf_becomes_the_folder_it_was_written_from(tmp_path):
    to_gguf(BUNDLED, tmp_path / "tiny.gguf")  # bf16 matrices bit for bit, norms in f32
    first, _ = split_gguf(tmp_path / "tiny.gguf", tmp_path, parts=2, name="tiny-bf16")
    said = []
    folder = gguf_reference.as_folder(first, tmp_path / "cache", said.append)
    assert folder.name == "tiny-bf16" and said and "written once as a model folder" in said[0]
    config = json.loads((folder / "config.json").read_text())
    bundled = json.loads((BUNDLED / "config.json").read_text())
    assert config["tie_word_embeddings"] is True  # no output.weight: llama.cpp reuses token_embd
    for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "num_key_value_heads",
                "vocab_size"):
        assert config[key] == bundled[key], key
    mine, theirs = _tensors(folder), _tensors(BUNDLED)
    assert set(mine) == set(theirs)
    for key, tensor in theirs.items():  # the same values: matrices in bf16 as shipped, norms widened to f32
        assert mine[key].shape == tensor.shape and mine[key].float().equal(tensor.float()), key
    assert gguf_reference.as_folder(first, tmp_path / "cache", said.append) == folder and len(said) == 1  # once


def test_a_gguf_name_maps_back_to_the_checkpoints():
    assert gguf_reference.hf_name("blk.3.attn_q.bias") == "model.layers.3.self_attn.q_proj.bias"
    assert gguf_reference.hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert gguf_reference.hf_name("output.weight") == "lm_head.weight"


def test_a_reference_gguf_that_is_not_one_is_one_line(tmp_path):
    (tmp_path / "x.gguf").write_text("hello")
    with pytest.raises(UserError, match=r"^reference .*x.gguf: not a GGUF file"):
        gguf_reference.as_folder(tmp_path / "x.gguf", tmp_path / "cache")


def test_room_for_the_reference_is_checked_before_its_folder_is_written(tmp_path, monkeypatch):
    import psutil

    from qadvisor.core.hardware import detect
    from qadvisor.core.measure.runner import Run, RunRequest

    to_gguf(BUNDLED, tmp_path / "tiny.gguf")
    to_gguf(BUNDLED, tmp_path / "checkpoint.gguf")
    memory = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory._replace(available=50 << 20))
    request = RunRequest(model_dir=str(tmp_path / "tiny.gguf"), checkpoints=[str(tmp_path / "checkpoint.gguf")],
                         cache_dir=tmp_path / "cache")
    with pytest.raises(UserError, match="not enough memory for the reference"):
        Run(request, detect(with_backends=False))
    assert not (tmp_path / "cache" / gguf_reference.REFERENCE_DIR).exists()
