"""Repo ids (`owner/name`) resolve through huggingface_hub, offline here: a cache the test lays out from the shipped
model stands for the Hugging Face cache; a repo neither cached nor reachable is one line, exit 2."""

import shutil

from tests.conftest import SHIPPED, run_cli


def _cache(tmp_path, repo="Qwen/Tiny-Qwen2"):
    """$HF_HOME/hub as huggingface_hub lays it out: blobs by hash, a snapshot per commit, refs/main naming it."""
    owner, name = repo.split("/")
    root = tmp_path / "hf" / "hub" / f"models--{owner}--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in SHIPPED.iterdir():
        shutil.copy(path, snapshot / path.name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    # HF_HUB_CACHE too: a library imported by an earlier test (GPTQModel's tokenizer helper) may have set it here
    return {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "HF_HUB_OFFLINE": "1"}


def test_a_cached_repo_id_is_planned_under_its_own_name(tmp_path):
    done = run_cli("plan", "--model", "Qwen/Tiny-Qwen2", "--json", env=_cache(tmp_path))
    assert done.returncode == 0, done.stderr
    assert '"model": "Tiny-Qwen2"' in done.stdout  # the repo's name, not the snapshot's commit hash


def test_a_repo_neither_cached_nor_reachable_is_one_line_before_anything_runs(tmp_path):
    env = _cache(tmp_path)
    for args in (["plan", "--model", "Qwen/Missing-7B"], ["--auto", "--model", "Qwen/Missing-7B"],
                 ["--auto", "--plan-for", "Qwen/Missing-7B"]):
        done = run_cli(*args, env=env, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Qwen/Missing-7B: not in the Hugging Face cache" in lines[0]
        assert "HF_HUB_OFFLINE" in lines[0]


def test_stream_needs_a_checkpoint_folder_and_no_second_target(tmp_path):
    done = run_cli("--auto", "--stream", timeout=120)
    assert done.returncode == 2 and "--stream measures a checkpoint folder" in done.stderr
    done = run_cli("--auto", "--stream", "--model", str(SHIPPED), "--plan-for", "Qwen2.5-7B", timeout=120)
    assert done.returncode == 2 and "drop one of them" in done.stderr


def test_a_quantized_repo_is_a_checkpoint_named_by_its_repo(tmp_path):
    """A cached GPTQ repo as --model, its unquantized repo as --reference: resolved offline, described, and checked
    against the reference before anything runs (here a reference of another depth: one line naming the repo)."""
    import json

    env = _cache(tmp_path)
    _cache(tmp_path, "Qwen/Tiny-Qwen2-GPTQ-Int4")
    snapshot = next((tmp_path / "hf" / "hub" / "models--Qwen--Tiny-Qwen2-GPTQ-Int4" / "snapshots").iterdir())
    config = json.loads((snapshot / "config.json").read_text())
    config.update(num_hidden_layers=6, quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 128})
    (snapshot / "config.json").write_text(json.dumps(config))
    done = run_cli("--auto", "--model", "Qwen/Tiny-Qwen2-GPTQ-Int4", "--reference", "Qwen/Tiny-Qwen2", env=env,
                   timeout=120)
    assert done.returncode == 2, done.stderr
    assert "not the model Tiny-Qwen2-GPTQ-Int4 was quantized from (num_hidden_layers 6 here, 8 there)" in done.stderr
