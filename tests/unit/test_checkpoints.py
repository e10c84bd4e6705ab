"""What a quantized checkpoint says of itself, and every way one cannot be measured as shipped: one line, exit 2,
before anything runs."""

import json
import shutil

import pytest

from qadvisor.core.measure import checkpoints
from qadvisor.errors import UserError
from qadvisor.quantizers import checkpoint
from tests.conftest import BUNDLED, run_cli

GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True, "sym": True,
        "checkpoint_format": "gptq", "meta": {"quantizer": ["gptqmodel:7.6.0"]}}
AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm", "zero_point": True}  # AutoAWQ's, as Qwen ships
NF4 = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}


def folder_with(tmp_path, quant, name="ckpt", **config):
    """The bundled model's config and tokenizer with a quantization_config: all `describe` and the checks read."""
    folder = tmp_path / name
    folder.mkdir()
    base = json.loads((BUNDLED / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**base, **config, "quantization_config": quant}))
    shutil.copy(BUNDLED / "tokenizer.json", folder)
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.mark.parametrize("quant, name, group, says", [
    (GPTQ, "as-shipped:gptq-int4", 128, "act-order, format gptq; written by gptqmodel:7.6.0"),
    (AWQ, "as-shipped:awq-int4", 128, "zero point, gemm"),
    (NF4, "as-shipped:bnb-nf4", 64, "4-bit nf4"),
])
def test_a_checkpoint_is_the_method_its_config_states(tmp_path, quant, name, group, says):
    spec = checkpoint.describe(folder_with(tmp_path, quant))
    assert (spec.name, spec.group_size, spec.bits) == (name, group, 4)
    assert says in spec.summary and spec.source == str((tmp_path / "ckpt").resolve())
    assert checkpoint.is_checkpoint(tmp_path / "ckpt") and not checkpoint.is_checkpoint(BUNDLED)


def test_a_gguf_is_described_by_its_header(tmp_path):
    from qadvisor.quantizers.ggufwrite import to_gguf

    to_gguf(BUNDLED, tmp_path / "model.gguf")  # unquantized: bf16 matrices
    spec = checkpoint.describe(tmp_path / "model.gguf")
    assert (spec.name, spec.backend, spec.bits) == ("as-shipped:gguf-bf16", "llamacpp", 16)
    checkpoints.check_reference([spec], BUNDLED)  # the model it was written from passes


def test_a_split_gguf_is_every_part_given_its_first(tmp_path):
    from qadvisor.quantizers.base import weights_bytes_on_disk
    from qadvisor.quantizers.ggufwrite import to_gguf
    from tests.samples import split_gguf

    to_gguf(BUNDLED, tmp_path / "model.gguf")
    first, *rest = split_gguf(tmp_path / "model.gguf", tmp_path)
    assert first.name == "tiny-q4_k_m-00001-of-00003.gguf" and len(rest) == 2
    spec = checkpoint.describe(first)
    assert (spec.name, spec.bits) == ("as-shipped:gguf-bf16", 16) and "split in 3 files" in spec.summary
    # the size is every part's, not the first's alone
    assert weights_bytes_on_disk(first) == sum(p.stat().st_size for p in (first, *rest))
    assert weights_bytes_on_disk(first) > 1.5 * first.stat().st_size
    named = checkpoints.describe_all([str(first), str(tmp_path / "model.gguf")])
    assert [s.name for s in named] == ["as-shipped:gguf-bf16@tiny-q4_k_m", "as-shipped:gguf-bf16@" + tmp_path.name]
    with pytest.raises(UserError, match="part 2 of a split GGUF; pass its first part, tiny-q4_k_m-00001-of-00003.gguf"):
        checkpoint.describe(rest[0])
    rest[1].unlink()
    proc = run_cli("--auto", "--model", str(first), "--reference", str(BUNDLED))
    assert proc.returncode == 2 and "tiny-q4_k_m-00003-of-00003.gguf is not beside it" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("make, words", [
    (lambda p: (p / "x.gguf").write_text("hello"), "not a GGUF file"),
    (lambda p: folder_with(p, {**GPTQ, "quant_method": "mxfp4"}), "no installed library reads it"),
    (lambda p: folder_with(p, GPTQ, model_type="llama"), "model_type 'llama'"),
    (lambda p: folder_with(p, {"quant_method": "compressed-tensors"}), "compressed-tensors"),
])
def test_a_checkpoint_nothing_here_reads_is_one_line(tmp_path, monkeypatch, make, words):
    made = make(tmp_path)
    path = made if made is not None and not isinstance(made, int) else tmp_path / "x.gguf"
    found = checkpoint.metadata.version

    def without_compressed_tensors(name):  # as on a machine without the library
        if name == "compressed-tensors":
            raise checkpoint.metadata.PackageNotFoundError(name)
        return found(name)

    monkeypatch.setattr(checkpoint.metadata, "version", without_compressed_tensors)
    with pytest.raises(UserError, match=words) as caught:
        checkpoint.describe(path)
    assert str(caught.value).startswith("checkpoint ") and "\n" not in str(caught.value)


def test_a_gguf_of_another_architecture_is_refused(tmp_path):
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(tmp_path / "llama.gguf"), arch="llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match="architecture 'llama'"):
        checkpoint.describe(tmp_path / "llama.gguf")


def test_a_reference_must_be_the_model_the_checkpoint_came_from(tmp_path):
    spec = checkpoint.describe(folder_with(tmp_path, GPTQ))
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((BUNDLED / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 6}))
    with pytest.raises(UserError, match="num_hidden_layers 8 here, 6 there"):
        checkpoints.check_reference([spec], other)
    tokenizer = json.loads((BUNDLED / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    a, b = (next(t for t, i in vocab.items() if i == n) for n in (300, 301))
    vocab[a], vocab[b] = 301, 300
    (other / "config.json").write_text(json.dumps(config))
    (other / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(UserError, match=r"tokenizer differs .*\(token 300 "):
        checkpoints.check_reference([spec], other)
    with pytest.raises(UserError, match="quantized itself"):
        checkpoints.check_reference([spec], tmp_path / "ckpt")


def test_checkpoints_side_by_side_are_named_apart_and_must_be_one_model(tmp_path):
    first, second, gguf = folder_with(tmp_path, GPTQ, "qwen"), folder_with(tmp_path, GPTQ, "ours"), tmp_path / "m.gguf"
    from qadvisor.quantizers.ggufwrite import to_gguf

    to_gguf(BUNDLED, gguf)
    specs = checkpoints.describe_all([str(first), str(second), str(gguf)])
    assert [s.name for s in specs] == ["as-shipped:gptq-int4@qwen", "as-shipped:gptq-int4@ours", "as-shipped:gguf-bf16"]
    checkpoints.check_together(specs)  # a GGUF and a folder of the same model
    (tmp_path / "sub").mkdir()
    again = folder_with(tmp_path / "sub", GPTQ, "qwen")
    assert [s.name[-2:] for s in checkpoints.describe_all([str(first), str(again)])] == ["#1", "#2"]
    with pytest.raises(UserError, match="listed twice"):
        checkpoints.describe_all([str(first), str(first)])
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "hidden_size": 256}))
    with pytest.raises(UserError, match="hidden_size 256 here, 384 there"):
        checkpoints.check_together(checkpoints.describe_all([str(first), str(second)]))


def test_bad_checkpoint_input_stops_before_measuring(tmp_path):
    ckpt, gguf = folder_with(tmp_path, GPTQ), tmp_path / "f16.gguf"
    gguf.write_bytes(b"GGUF")
    for args, words in ((("--reference", str(BUNDLED)), "--reference is the unquantized model"),
                        (("--model", str(ckpt), "--methods", "bnb-nf4"), "pass it with --reference"),
                        (("--model", str(ckpt), "--plan-for", "Qwen2.5-7B"), "--plan-for works on an unquantized"),
                        (("--model", str(ckpt), "--reference", str(gguf)), "f16.gguf: unreadable GGUF file")):
        proc = run_cli("--auto", *args, env={"QADVISOR_CACHE": str(tmp_path / "cache")})
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "cache" / "logs").exists()
