"""Repo ids (`owner/name`) resolve through huggingface_hub, offline here: a cache the test lays out from the bundled
model stands for the Hugging Face cache; a repo neither cached nor reachable is one line, exit 2."""

import shutil

import pytest

from tests.conftest import BUNDLED, run_cli


def _cache(tmp_path, repo="Qwen/Tiny-Qwen2"):
    """$HF_HOME/hub as huggingface_hub lays it out: blobs by hash, a snapshot per commit, refs/main naming it."""
    owner, name = repo.split("/")
    root = tmp_path / "hf" / "hub" / f"models--{owner}--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in BUNDLED.iterdir():
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
    done = run_cli("--auto", "--stream", "--model", str(BUNDLED), "--plan-for", "Qwen2.5-7B", timeout=120)
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


def _gguf_repo(tmp_path, *names):
    """A cached GGUF repo holding files of these names (a GGUF's magic and nothing else: enough to be picked)."""
    env = _cache(tmp_path, "Qwen/Tiny-Qwen2-GGUF")
    snapshot = next((tmp_path / "hf" / "hub" / "models--Qwen--Tiny-Qwen2-GGUF" / "snapshots").iterdir())
    for path in snapshot.iterdir():
        path.unlink()
    for name in names:
        (snapshot / name).write_bytes(b"GGUF")
    return env


@pytest.mark.parametrize("names, ref, says", [
    # llama.cpp's -hf naming: the type at the end of the file's name, in any case; the file picked is then read
    (["tiny-q4_k_m.gguf", "tiny-Q8_0.gguf"], "q8_0", "tiny-Q8_0.gguf: unreadable GGUF file"),
    (["tiny-q4_k_m-00001-of-00002.gguf", "tiny-q4_k_m-00002-of-00002.gguf"], "Q4_K_M",
     "tiny-q4_k_m-00001-of-00002.gguf: unreadable GGUF file"),  # a split one: its first part
    (["tiny-q4_k_m.gguf", "tiny-q8_0.gguf"], "Q5_K_M", "no GGUF file of type Q5_K_M in Qwen/Tiny-Qwen2-GGUF as cached "
     "(HF_HUB_OFFLINE is set) (it has tiny-q4_k_m.gguf, tiny-q8_0.gguf)"),
    (["tiny-q4_k_m.gguf", "other-q4_k_m.gguf"], "Q4_K_M", "more than one GGUF file of that type (other-q4_k_m.gguf"),
    # the repo alone: it has no model folder to read, and the line says how to name one of its files
    (["tiny-fp16-00001-of-00002.gguf", "tiny-fp16-00002-of-00002.gguf", "tiny-q4_k_m.gguf"], None,
     "a repo of GGUF files; name the one to measure by its type, as llama.cpp's -hf does: Qwen/Tiny-Qwen2-GGUF:Q4_K_M "
     "(types here: FP16, Q4_K_M)"),
])
def test_a_gguf_repo_and_type_resolve_to_its_file_as_llama_cpp_names_it(tmp_path, names, ref, says):
    env = _gguf_repo(tmp_path, *names)
    done = run_cli("--auto", "--model", "Qwen/Tiny-Qwen2-GGUF" + (f":{ref}" if ref else ""), env=env, timeout=120)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_gguf_type_not_cached_fetches_that_files_parts_alone(tmp_path, monkeypatch):
    """Online (the hub stood in for): the repo's listing picks the type's file, and only its parts are downloaded."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from qadvisor.core import hub

    fetched = []

    def snapshot_download(repo, local_files_only=False, allow_patterns=None):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        fetched.extend(allow_patterns)
        return str(tmp_path)

    class Info:
        siblings = [type("File", (), {"rfilename": name}) for name in (
            "README.md", "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf",
            "qwen2.5-7b-instruct-q4_0.gguf", "qwen2.5-7b-instruct-q8_0-00001-of-00003.gguf")]

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo: Info())
    path = hub.resolve("Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M")
    assert path == str(tmp_path / "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf")
    assert fetched == ["qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf"]
