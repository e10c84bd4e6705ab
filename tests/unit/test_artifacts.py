"""The quantized-model cache: keyed by every input that decides the files, reused only whole."""

import re
from pathlib import Path

from qadvisor.core.hardware import detect
from qadvisor.core.measure import artifacts
from qadvisor.core.measure.runner import Run, RunRequest

BUNDLED = Path(__file__).resolve().parents[2] / "assets" / "qwen2-tiny-stdlib"


def _entry(run: Run, method: str) -> Path:
    from qadvisor.quantizers import registry

    recipe = registry.parse_methods(method)[0]
    job = run._job("trial", recipe, run.cache_dir, False)
    return job.artifact_dir


def test_a_changed_calibration_text_changes_the_key_of_calibrated_methods_only(tmp_path):
    other = tmp_path / "calib.txt"
    other.write_text((BUNDLED / "calib.txt").read_text() + "\n\nOne more paragraph.")
    hw = detect(with_backends=False)
    first = Run(RunRequest(methods=["gptq-int4", "bnb-nf4"]), hw)
    second = Run(RunRequest(methods=["gptq-int4", "bnb-nf4"], calib_text=other), hw)
    assert _entry(first, "gptq-int4") != _entry(second, "gptq-int4")
    assert _entry(first, "bnb-nf4") == _entry(second, "bnb-nf4")
    assert _entry(first, "bnb-nf4") != _entry(first, "gptq-int4")
    # A KV-cache stack quantizes the same weights: it reuses the weight method's entry.
    assert _entry(first, "bnb-nf4+kv-int4") == _entry(first, "bnb-nf4")


def test_a_method_is_keyed_by_what_it_sets_not_by_the_fields_a_checkpoint_adds(tmp_path):
    """A spec's key holds its own fields only: the checkpoint's `source` (never set for a method that is cached) does
    not enter it, so existing entries stay valid."""
    import json

    run = Run(RunRequest(methods=["gptq-int4"]), detect(with_backends=False))
    spec = json.loads(run._artifact_inputs(run.recipes[0].weights)["spec"])
    assert set(spec) == {"name", "backend", "bits", "scheme", "group_size", "component", "summary"}


def test_a_changed_model_file_changes_the_hash(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"\0" * 1000)
    before = artifacts.content_hash(model)
    (model / "model.safetensors").write_bytes(b"\0" * 500 + b"\1" + b"\0" * 499)  # same size, one byte in the middle
    assert artifacts.content_hash(model) != before
    (model / "heldout.txt").write_text("evaluation text is not the model")
    assert artifacts.content_hash(model) == artifacts.content_hash(model)


def test_an_entry_is_used_only_when_whole(tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "model.safetensors").write_bytes(b"x" * 100)
    inputs = {"model": "abc", "spec": "{}"}
    entry = tmp_path / "artifacts" / artifacts.key_of(inputs)
    assert artifacts.lookup(entry) is None
    artifacts.store(entry, saved, "m", 1.5, inputs)
    meta = artifacts.lookup(entry)
    assert meta is not None and meta.quantize_s == 1.5 and meta.files == {"model.safetensors": 100}
    (entry / artifacts.MODEL_FOLDER / "model.safetensors").write_bytes(b"x" * 50)  # cut short
    assert artifacts.lookup(entry) is None
    artifacts.store(entry, saved, "m", 2.0, inputs)  # stored again over the damaged one
    assert artifacts.lookup(entry).quantize_s == 2.0
    assert not list(entry.parent.glob(".*.tmp"))


def test_the_least_recently_used_models_go_beyond_the_cap(tmp_path, monkeypatch):
    import os

    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "model.safetensors").write_bytes(b"x" * 1000)
    folder = tmp_path / "artifacts"
    for age, key in enumerate(("old", "use", "new")):
        artifacts.store(folder / key, saved, key, 1.0, {})
        os.utime(folder / key / artifacts.META_FILE, (1000 + age, 1000 + age))
    artifacts.mark_used(folder / "use")  # a trial took it just now
    kept_bytes = artifacts.folder_bytes(folder / "new")
    assert artifacts.prune(folder, keep="new", limit=3 * kept_bytes) == []  # all three fit
    assert artifacts.prune(folder, keep="new", limit=2 * kept_bytes) == ["old"]
    assert artifacts.prune(folder, keep="new", limit=0) == ["use"]  # never the one just stored
    assert [p.name for p in folder.iterdir()] == ["new"]
    monkeypatch.setenv(artifacts.MAX_GB_ENV, "0.5")
    assert artifacts.max_bytes() == 2**29


def test_cache_command_lists_and_clears(tmp_path):
    from tests.conftest import run_cli

    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "model.safetensors").write_bytes(b"x" * 2**20)
    artifacts.store(tmp_path / "cache" / "artifacts" / "k1", saved, "m", 1.0, {})
    env = {"QADVISOR_CACHE": str(tmp_path / "cache")}
    listed = run_cli("cache", env=env)
    assert listed.returncode == 0 and re.search(r"artifacts +1 entries", listed.stdout) and "1.0 MiB" in listed.stdout
    assert "quantized models kept up to 8 GiB" in listed.stdout
    cleared = run_cli("cache", "--clear", "artifacts", env=env)
    assert cleared.returncode == 0 and "1.0 MiB freed" in cleared.stdout
    assert not (tmp_path / "cache" / "artifacts").exists()


def test_clear_all_keeps_the_saved_runs(tmp_path):
    for part in ("artifacts", "reference", "runs"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "x").write_bytes(b"1234")
    assert artifacts.clear(tmp_path, "all") == 8
    assert (tmp_path / "runs" / "x").exists() and not (tmp_path / "artifacts").exists()
    assert artifacts.clear(tmp_path, "runs") == 4


def test_slices_live_in_the_listed_synthetic_part_and_shared_shards_count_once(tmp_path):
    """A slice kept where `qadvisor cache` cannot see it is gigabytes the user can neither see nor clear."""
    from qadvisor.core.plan.slices import slice_dir

    legacy = tmp_path / "slices" / "Qwen2.5-72B-2L"
    legacy.mkdir(parents=True)
    (legacy / "model-table.safetensors").write_bytes(b"x" * 1000)
    deep = slice_dir(tmp_path, "Qwen2.5-72B", 2)
    assert deep == tmp_path / "synthetic" / "Qwen2.5-72B-2L" and (deep / "model-table.safetensors").is_file()
    assert not (tmp_path / "slices").exists()  # moved, not copied
    shallow = slice_dir(tmp_path, "Qwen2.5-72B", 1)
    shallow.mkdir()
    (shallow / "model-table.safetensors").hardlink_to(deep / "model-table.safetensors")
    rows = {part: (entries, size) for part, _, entries, size in artifacts.cache_summary(tmp_path)}
    assert rows["synthetic"] == (2, 1000)
    assert artifacts.clear(tmp_path, "all") == 1000 and not (tmp_path / "synthetic").exists()


def test_folders_made_for_checkpoints_are_listed_and_cleared(tmp_path):
    """What a checkpoint's run writes into the cache (its stand-in config and tokenizer, a GGUF reference's model
    folder: gigabytes for a 7B) is a part `qadvisor cache` shows and `--clear all` removes."""
    from qadvisor.core.measure.checkpoints import STAND_IN_DIR
    from qadvisor.core.measure.gguf_reference import REFERENCE_DIR

    for part in (STAND_IN_DIR, REFERENCE_DIR):
        (tmp_path / part / "m").mkdir(parents=True)
        (tmp_path / part / "m" / "x").write_bytes(b"12345")
    rows = {part: (entries, size) for part, _, entries, size in artifacts.cache_summary(tmp_path)}
    assert rows[STAND_IN_DIR] == (1, 5) and rows[REFERENCE_DIR] == (1, 5)
    assert artifacts.clear(tmp_path, "all") == 10
