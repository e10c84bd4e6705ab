"""Ctrl-C in `--auto` keeps what finished: the current trial is stopped, the export and report are written with
`complete: false`, the exit code is 130, and no trial process outlives the run."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from qadvisor.quantizers import registry
from qadvisor.schemas.export import load_export


def _workers_under(folder) -> list[psutil.Process]:
    """Trial processes working in `folder` (fresh or forked warm: either way their working folder is the trial's),
    and the warm process that forks them (its cache folder is the test's)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "environ"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "qadvisor.core." not in cmdline or proc.pid == os.getpid():
            continue
        in_folder = str(folder) in (proc.info["cwd"] or "")
        ours = (proc.info["environ"] or {}).get("QADVISOR_CACHE", "").startswith(str(folder.parent))
        if in_folder or ("qadvisor.core.measure.forkserver" in cmdline and ours):
            found.append(proc)
    return found


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_keeps_finished_results(tmp_path, stop):
    """Ctrl-C reaches the terminal's whole process group; `kill` and `timeout` send SIGTERM to the CLI alone, which
    stops the run the same way: no trial process is left working (or holding gigabytes) behind it."""
    work, export, report = tmp_path / "models", tmp_path / "part.json", tmp_path / "part.md"
    env = {**os.environ, registry.MOCK_ENV: "1", "QADVISOR_CACHE": str(tmp_path / "cache")}
    cli = subprocess.Popen(
        [sys.executable, "-m", "qadvisor", "--auto", "--methods", "mock-passthrough,fp32,bf16", "--repeats", "2",
         "--decode-tokens", "4", "--keep-models", str(work), "--export", str(export), "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        seen = ""
        while "✓ mock-passthrough" not in seen:  # the first trial finished
            line = cli.stderr.readline()
            assert line, f"the run ended early: {seen}"
            seen += line
        deadline = time.monotonic() + 120
        while not _workers_under(work) and time.monotonic() < deadline:  # the second trial is running
            time.sleep(0.1)
        if stop == "ctrl-c":
            os.killpg(cli.pid, signal.SIGINT)  # as a terminal sends it: to the foreground process group
        else:
            cli.send_signal(signal.SIGTERM)
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    saved = load_export(export)
    assert not saved.complete and saved.cut == ["fp32", "bf16"]
    assert [r.method for r in saved.results if r.status == "ok"] == ["mock-passthrough"]
    assert "incomplete run" in report.read_text()
    assert "mock-passthrough" in out
    assert not _workers_under(work), [(p.pid, p.cmdline(), p.cwd(), p.status()) for p in _workers_under(work)]


def test_ctrl_c_while_streaming_keeps_the_methods_that_streamed(tmp_path):
    """--plan-for a checkpoint folder streams its accuracy in the run's own process: the first Ctrl-C stops at the next
    layer, and the export keeps the methods that finished streaming, `complete: false`."""
    import shutil

    from tests.conftest import BUNDLED

    checkpoint, export = tmp_path / "my-qwen", tmp_path / "part.json"
    shutil.copytree(BUNDLED, checkpoint)
    env = {**os.environ, registry.MOCK_ENV: "1", "QADVISOR_CACHE": str(tmp_path / "cache")}
    cli = subprocess.Popen(
        [sys.executable, "-m", "qadvisor", "--auto", "--methods", "mock-passthrough,bf16", "--repeats", "1",
         "--decode-tokens", "4", "--plan-for", str(checkpoint), "--target", "A100-80GB", "--export", str(export)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        seen = ""
        while "bf16 streamed: evaluate" not in seen:  # the reference and mock-passthrough streamed, bf16 begun
            line = cli.stderr.readline()
            assert line, f"the run ended early: {seen}"
            seen += line
        os.killpg(cli.pid, signal.SIGINT)
        out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 130, err
    assert "Traceback" not in err
    streamed = load_export(export).streamed
    assert streamed.model == "my-qwen" and not streamed.complete and streamed.ref_ppl is not None
    assert [m.method for m in streamed.methods] == ["mock-passthrough"]
