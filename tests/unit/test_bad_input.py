"""Bad input gets one clear line on stderr and exit code 2, never a traceback."""

import json
import shutil

import pytest

from qadvisor.errors import UserError
from tests.conftest import BUNDLED, run_cli


def _assert_one_line_error(proc, fragment):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def _model_copy(tmp_path):
    target = tmp_path / "model"
    shutil.copytree(BUNDLED, target)
    return target


def test_missing_model(tmp_path):
    _assert_one_line_error(run_cli("--auto", "--model", str(tmp_path / "none")), "not found")


def test_not_a_model_dir(tmp_path):
    _assert_one_line_error(run_cli("--auto", "--model", str(tmp_path)), "no config.json")


def test_corrupt_config(tmp_path):
    model = _model_copy(tmp_path)
    (model / "config.json").write_text("{oops")
    _assert_one_line_error(run_cli("--auto", "--model", str(model)), "not a readable model config")


def test_wrong_architecture(tmp_path):
    model = _model_copy(tmp_path)
    config = json.loads((model / "config.json").read_text())
    config["model_type"] = "llama"
    (model / "config.json").write_text(json.dumps(config))
    _assert_one_line_error(run_cli("--auto", "--model", str(model)), "model_type 'llama'; qadvisor knows qwen2 (Qwen2/Qwen2.5), qwen3")


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_corrupt_weights(tmp_path, damage):
    model = _model_copy(tmp_path)
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\xff" * 64 + data[64:])
    _assert_one_line_error(run_cli("--auto", "--model", str(model)), "corrupt safetensors")


def test_unknown_method():
    _assert_one_line_error(run_cli("--auto", "--methods", "fp32,awq-int7"), "unknown method 'awq-int7'")


def test_stack_of_two_weight_methods():
    _assert_one_line_error(run_cli("--auto", "--methods", "bnb-nf4+hqq-int4"), "cannot stack")


def test_tui_without_terminal():
    _assert_one_line_error(run_cli(), "--auto")


def test_not_enough_memory_for_a_synthetic_72b():
    import psutil

    if psutil.virtual_memory().available > 800 * 2**30:
        pytest.skip("this machine could measure a 72B")
    _assert_one_line_error(run_cli("--auto", "--model", "synthetic:Qwen2.5-72B"), "not enough memory")


@pytest.mark.parametrize("args, fragment", [
    (["--target", "A100-80GB"], "--measure times this machine"),
    (["--methods", "bnb-nf4+hqq-int4"], "cannot stack"),
    (["--batch", "2"], "--measure times batch 1"),
    (["--threads", "0"], "--threads"),
    (["--prompt-tokens", "4000", "--context", "8192"], "prompts of at most 2048"),
])
def test_plan_measure_refuses_before_building_anything(args, fragment, tmp_path):
    proc = run_cli("plan", "--model", "Qwen2.5-7B", "--measure", *args, env={"QADVISOR_CACHE": str(tmp_path)})
    _assert_one_line_error(proc, fragment)
    assert not (tmp_path / "synthetic").exists()


@pytest.mark.parametrize("where, fragment", [
    ("dir", "is a directory"),
    ("missing/run.json", "does not exist"),
])
@pytest.mark.parametrize("flag", ["--export", "--report"])
def test_output_paths_are_checked_before_measuring(tmp_path, flag, where, fragment):
    path = tmp_path if where == "dir" else tmp_path / where
    proc = run_cli("--auto", "--methods", "fp32", flag, str(path), env={"QADVISOR_CACHE": str(tmp_path / "cache")})
    _assert_one_line_error(proc, f"{flag} ")
    assert fragment in proc.stderr
    assert not (tmp_path / "cache").exists()  # nothing was measured, not even the reference


def test_export_and_report_must_differ(tmp_path):
    same = str(tmp_path / "run.json")
    _assert_one_line_error(run_cli("--auto", "--export", same, "--report", same), "the same file")


def test_advise_checks_its_output_before_writing(tmp_path):
    from qadvisor.schemas.export import save_export
    from tests.samples import sample_export

    save_export(sample_export(), tmp_path / "run.json")
    proc = run_cli("advise", "--from", str(tmp_path / "run.json"), "--export", str(tmp_path / "no" / "x.json"))
    _assert_one_line_error(proc, "does not exist")


def test_short_evaluation_text_is_refused_before_measuring(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("def f():\n    return 1\n")
    proc = run_cli("--auto", "--methods", "fp32", "--eval-text", str(short), env={"QADVISOR_CACHE": str(tmp_path / "c")})
    _assert_one_line_error(proc, "tokens of evaluation text; at least 256 are needed")
    assert not (tmp_path / "c").exists()


def test_a_prompt_longer_than_the_evaluation_text_is_refused(tmp_path):
    text = tmp_path / "eval.txt"
    text.write_text("def f(x):\n    return x + 1\n\n" * 40)  # 479 tokens: a window, not a prompt of 1000
    proc = run_cli("--auto", "--methods", "fp32", "--prompt-tokens", "1000", "--decode-tokens", "2", "--eval-text",
                   str(text), env={"QADVISOR_CACHE": str(tmp_path / "c")})
    _assert_one_line_error(proc, "at least 1000 are needed")


def test_a_sequence_longer_than_the_context_window_is_refused(tmp_path):
    proc = run_cli("--auto", "--methods", "fp32", "--prompt-tokens", "1000", "--decode-tokens", "32",
                   env={"QADVISOR_CACHE": str(tmp_path / "c")})
    _assert_one_line_error(proc, "= 1032 tokens: more than the context window of qwen2-tiny-stdlib (1024 tokens")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("env, fragment", [
    ({"QADVISOR_CACHE": "A_FILE"}, "A_FILE: is a file; give a folder"),
    ({"QADVISOR_CACHE_MAX_GB": "lots"}, "$QADVISOR_CACHE_MAX_GB='lots': give the GiB"),
    ({"QADVISOR_CACHE_MAX_GB": "-1"}, "a number of at least 0"),
    ({"QADVISOR_FAST_BF16": "yes"}, "$QADVISOR_FAST_BF16='yes': write 1"),
])
@pytest.mark.parametrize("command", [["--auto", "--methods", "fp32"], ["cache"], ["doctor"]])
def test_the_environment_is_checked_before_anything_runs(tmp_path, env, fragment, command):
    (tmp_path / "A_FILE").write_text("not a folder")
    env = {"QADVISOR_CACHE": str(tmp_path / "c"), **{k: str(tmp_path / v) if v == "A_FILE" else v for k, v in env.items()}}
    _assert_one_line_error(run_cli(*command, env=env), fragment)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--threads", "0"], "--threads must be at least 1"),
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--decode-tokens", "1"], "--decode-tokens must be at least 2"),
    (["--prompt-tokens", "0"], "--prompt-tokens must be at least 1"),
    (["--max-kl", "-1"], "--max-kl must be at least 0"),
    (["--min-tok-s", "-5"], "--min-tok-s must be above 0"),
    (["--max-ppl-rise", "-3"], "--max-ppl-rise must be at least 0"),
    (["--priorities", "storage=-1"], "storage must not be negative"),
    (["--max-size", "abc"], "max size 'abc': not a size"),
    (["--priorities", "storage=0,latency=0,accuracy=0"], "weights: at least one of storage, latency, accuracy"),
    (["--profile", "nope"], "unknown profile 'nope'"),
    (["--calib-text", "/nonexistent/calib.txt"], "no such file"),
    (["--keep-models", "A_FILE"], "A_FILE: is a file; give a folder"),
    (["--plan-for", "A.gguf"], "A.gguf: a GGUF file; plan for its model by name"),
])
def test_every_option_is_checked_before_measuring(tmp_path, args, fragment):
    (tmp_path / "A_FILE").write_text("not a folder")
    (tmp_path / "A.gguf").write_bytes(b"GGUF")
    args = [str(tmp_path / a) if a in ("A_FILE", "A.gguf") else a for a in args]
    proc = run_cli("--auto", "--methods", "fp32", *args, env={"QADVISOR_CACHE": str(tmp_path / "c")})
    _assert_one_line_error(proc, fragment)
    assert not (tmp_path / "c").exists()


def test_cuda_asked_for_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli("--auto", "--methods", "fp32", "--device", "cuda", env={"QADVISOR_CACHE": str(tmp_path / "c")})
    _assert_one_line_error(proc, "--device cuda: no CUDA device is visible")
    assert not (tmp_path / "c").exists()


def test_not_enough_disk_is_refused_before_measuring(tmp_path, monkeypatch):
    import shutil as sh
    from collections import namedtuple

    from qadvisor.core.hardware import detect
    from qadvisor.core.measure.runner import Run, RunRequest
    from qadvisor.errors import UserError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda path: usage(10**9, 10**9 - 50 * 2**20, 50 * 2**20))  # 50 MiB free
    request = RunRequest(methods=["fp32", "bnb-nf4"], cache_dir=tmp_path / "c", work_dir=tmp_path / "w")
    with pytest.raises(UserError, match="not enough disk for this run"):
        Run(request, detect(with_backends=False))
    monkeypatch.setattr(sh, "disk_usage", lambda path: usage(10**12, 0, 10**12))
    Run(request, detect(with_backends=False))


def test_a_calibration_text_too_short_for_gptq_is_refused_before_measuring(tmp_path):
    empty = tmp_path / "calib.txt"
    empty.write_text("short\n\nlines\n\n")
    args = ["--auto", "--methods", "fp32,gptq-int4", "--calib-text", str(empty)]
    proc = run_cli(*args, env={"QADVISOR_CACHE": str(tmp_path / "c")})
    _assert_one_line_error(proc, "no paragraph of at least 16 tokens to calibrate on")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("args, fragment", [(["--pin", "fp32"], "--pin: write METHOD=RESOURCE"),
                                            (["--pin", "fp32=H100"], "--pin places methods on the nodes of a Ray "
                                                                      "cluster: it needs --cluster")])
def test_a_pin_that_cannot_work_is_one_line(tmp_path, args, fragment):
    proc = run_cli("--auto", "--methods", "fp32", *args, env={"QADVISOR_CACHE": str(tmp_path / "c")})
    _assert_one_line_error(proc, fragment)


@pytest.mark.parametrize("address, fragment", [("nonsense", "write local or HOST:PORT"),
                                               ("127.0.0.1:1", "no Ray head answers there")])
def test_a_cluster_address_that_cannot_work_is_one_line_at_once(tmp_path, address, fragment):
    pytest.importorskip("ray")
    proc = run_cli("--auto", "--cluster", address, "--methods", "fp32", env={"QADVISOR_CACHE": str(tmp_path / "c")},
                   timeout=60)
    _assert_one_line_error(proc, fragment)


@pytest.mark.parametrize("values, field", [
    ({"repeats": 0}, "repeats"), ({"decode_tokens": -1}, "decode_tokens"), ({"prompt_tokens": 0}, "prompt_tokens"),
])
def test_an_options_error_names_its_field_so_no_face_reads_the_words_back(values, field):
    from qadvisor.app.options import run_options

    with pytest.raises(UserError) as caught:
        run_options(prefix="", **values)
    assert caught.value.field == field


@pytest.mark.parametrize("values, field", [
    ({"max_size": "big"}, "max_size"), ({"min_tok_s": 0}, "min_tok_s"), ({"max_kl": -1}, "max_kl"),
    ({"storage": 0, "latency": 0, "accuracy": 0}, "storage"),
])
def test_a_priorities_error_names_its_field(values, field):
    from qadvisor.app.options import priority_options

    with pytest.raises(UserError) as caught:
        priority_options(prefix="", **values).priorities()
    assert caught.value.field == field


def test_the_command_line_and_the_tui_form_map_their_input_through_one_function():
    """What the command line says reaches the TUI's run too: the form's blank fields keep it."""
    import argparse

    from qadvisor.app.options import values_from_args

    args = argparse.Namespace(model=None, threads=1, methods="fp32, gguf-q8_0", no_cache=True, eval_text=None)
    values = values_from_args(args)
    assert values["threads"] == 1 and values["methods"] == ["fp32", "gguf-q8_0"] and values["reuse_cache"] is False
    assert values["plan_for"] is None  # an option the command line lacks: the default
