"""Checkpoints measured as shipped: qadvisor's own kept models of the bundled model, measured again side by side with
the bundled model as their reference, give back the trials' sizes to the byte and their accuracy within 1 %."""

import pytest

from qadvisor.schemas.export import load_export
from tests.conftest import BUNDLED, run_cli

KEPT = ("gptq-int4", "bnb-nf4", "gguf-q4_k_m")  # among the default methods: the session's cache has them (test_auto)


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kept")
    out = folder / "trials.json"
    proc = run_cli("--auto", "--methods", ",".join(KEPT), "--repeats", "2", "--keep-models", str(folder / "models"),
                   "--export", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = {m: folder / "models" / m / "model.gguf" if m.startswith("gguf") else folder / "models" / m for m in KEPT}
    return paths, {r.method: r for r in load_export(out).results}


def as_shipped(paths, tmp_path, *extra, env=None):
    out = tmp_path / "shipped.json"
    proc = run_cli("--auto", "--model", ",".join(str(p) for p in paths), "--repeats", "2", "--export", str(out), *extra,
                   env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_export(out), proc.stdout


def test_kept_models_measured_as_shipped_reproduce_their_trials(kept, tmp_path):
    from tests.samples import split_gguf

    paths, trials = kept
    # the GGUF as Qwen ships its larger ones, split in parts: measured whole from its first part
    parts = split_gguf(paths["gguf-q4_k_m"], tmp_path)
    paths = {**paths, "gguf-q4_k_m": parts[0]}
    export, stdout = as_shipped(paths.values(), tmp_path, "--reference", str(BUNDLED))
    results = {r.method: r for r in export.results}
    assert export.model.checkpoints == [str(p) for p in paths.values()]
    for method, path in paths.items():
        shipped, trial = results[f"as-shipped:{method}"], trials[method]
        assert shipped.status == "ok", shipped.reason
        if method == "gguf-q4_k_m":  # every part, each with a header of its own
            assert shipped.size_bytes == sum(p.stat().st_size for p in parts)
            assert 0 < shipped.size_bytes - trial.size_bytes < 4096
        else:
            assert shipped.size_bytes == trial.size_bytes
        assert abs(shipped.ppl / trial.ppl - 1) < 0.01 and abs(shipped.kl_mean / trial.kl_mean - 1) < 0.01
        assert shipped.notes[0] and path.exists()  # what the checkpoint says of itself; the user's files left alone
    assert "split in 3 files" in results["as-shipped:gguf-q4_k_m"].notes[0]
    assert export.recommendation.method.startswith("as-shipped:")  # the advisor weighs them like any method


def gguf_repo(tmp_path, gguf):
    """A Hugging Face cache that holds a GGUF repo with `gguf` as its Q4_K_M file; the environment that points to it."""
    import shutil

    root = tmp_path / "hf" / "hub" / "models--Qwen--Tiny-Qwen2-GGUF"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(gguf, root / "snapshots" / commit / "tiny-qwen2-q4_k_m.gguf")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(root.parent), "HF_HUB_OFFLINE": "1"}


def test_without_a_reference_size_and_speed_only(kept, tmp_path):
    paths, trials = kept
    env = gguf_repo(tmp_path, paths["gguf-q4_k_m"])  # named as llama.cpp's -hf names it: the repo and the type
    export, stdout = as_shipped(["Qwen/Tiny-Qwen2-GGUF:Q4_K_M", paths["gptq-int4"]], tmp_path, env=env)
    results = {r.method: r for r in export.results}
    for method in ("gguf-q4_k_m", "gptq-int4"):
        shipped = results[f"as-shipped:{method}"]
        assert shipped.size_bytes == trials[method].size_bytes and shipped.decode_tok_s > 0
        assert shipped.kl_mean is None and "no reference model" in shipped.reason
    assert export.model.bf16_basis.startswith("estimate") and "accuracy n/a: no reference model" in stdout


def compressed_int8(folder):
    """The bundled model in compressed-tensors' int-quantized format (int8 per channel), written by that library."""
    import shutil

    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationConfig,
        QuantizationScheme,
        QuantizationStatus,
        apply_quantization_config,
    )
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(BUNDLED), dtype=torch.bfloat16)
    args = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel")
    apply_quantization_config(model, QuantizationConfig(config_groups={"g": QuantizationScheme(targets=["Linear"],
                              weights=args)}, ignore=["lm_head"], format="int-quantized"))
    for module in model.modules():
        if hasattr(module, "weight_scale"):  # absmax per output channel: what a calibration-free int8 scheme sets
            module.weight_scale.data = (module.weight.data.float().abs().amax(dim=1, keepdim=True) / 127).clamp(
                min=1e-8).to(module.weight_scale.dtype)
            module.quantization_status = QuantizationStatus.FROZEN
    compressor = ModelCompressor.from_pretrained_model(model, quantization_format="int-quantized")
    compressor.compress_model(model)
    model.save_pretrained(str(folder))
    compressor.update_config(str(folder))
    shutil.copy(BUNDLED / "tokenizer.json", folder)
    return folder


def test_a_compressed_tensors_checkpoint_is_measured_as_shipped(tmp_path):
    pytest.importorskip("compressed_tensors")
    folder = compressed_int8(tmp_path / "w8")
    export, _ = as_shipped([folder], tmp_path, "--reference", str(BUNDLED))
    shipped = export.results[0]
    assert (shipped.method, shipped.status, shipped.backend) == ("as-shipped:compressed-tensors-int8", "ok", "torch")
    assert shipped.size_bytes < 0.7 * export.model.bf16_bytes and 0 < shipped.kl_mean < 1e-3
    assert "per channel" in shipped.notes[0] and "written by compressed-tensors" in shipped.notes[0]


def test_an_unquantized_gguf_is_a_reference_as_its_folder_is(kept, tmp_path):
    """Qwen's GGUF repos hold an F16 file beside the quantized ones: as the reference, split in parts, it scores a
    kept GGUF as the bundled model's folder does; a quantized GGUF as the reference is one line, before anything."""
    from qadvisor.quantizers.ggufwrite import to_gguf
    from tests.samples import split_gguf

    paths, trials = kept
    to_gguf(BUNDLED, tmp_path / "tiny.gguf")
    first, _ = split_gguf(tmp_path / "tiny.gguf", tmp_path, parts=2, name="tiny-bf16")
    export, _ = as_shipped([paths["gguf-q4_k_m"]], tmp_path, "--reference", str(first))
    shipped, trial = export.results[0], trials["gguf-q4_k_m"]
    assert export.model.name == "tiny-bf16" and export.model.bf16_basis == "measured"
    assert abs(shipped.ppl / trial.ppl - 1) < 0.01 and abs(shipped.kl_mean / trial.kl_mean - 1) < 0.01
    assert abs(export.model.bf16_bytes / (trial.size_bytes * trial.compression_ratio) - 1) < 1e-6  # the same baseline
    proc = run_cli("--auto", "--model", str(first), "--reference", str(paths["gguf-q4_k_m"]))
    assert proc.returncode == 2 and "is quantized itself (Q4_K_M:" in proc.stderr, proc.stderr[-2000:]

