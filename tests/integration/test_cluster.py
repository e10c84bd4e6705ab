"""`--cluster local`: a real Ray started on this machine (nothing reaches outside it). Trials run as Ray tasks on
the node, each result names its node and hardware kind, and a Ray worker killed mid-trial fails that trial only."""

import time
from pathlib import Path

import psutil
import pytest

from qadvisor.app.advice import kind_results
from qadvisor.app.auto import AutoSession
from qadvisor.app.options import run_options
from qadvisor.schemas.events import Progress
from qadvisor.schemas.priorities import load_profile
from tests.conftest import trial_processes

ray = pytest.importorskip("ray")


@pytest.fixture
def fresh_ray():
    yield
    ray.shutdown()


def _session(methods, **extra):
    opts = run_options(methods=methods, repeats=1, decode_tokens=8, **extra)
    return AutoSession(opts, load_profile("balanced"))


def test_a_local_cluster_measures_what_a_local_run_does(fresh_ray):
    """... and --plan-for on this machine's kind: slices timed on one node of each kind after its trials, advice
    per kind."""
    from tests.conftest import BUNDLED

    here = _session(["fp32", "gguf-q8_0"])
    list(here.events())
    local = {r.method: r for r in here.export().results}
    session = _session(["fp32", "gguf-q8_0"], cluster="local", plan_for=str(BUNDLED), target_methods=["gguf-q8_0"])
    events = list(session.events())
    export = session.export()
    (kind,) = export.kinds
    assert kind.recommendation is not None
    node = ray.nodes()[0]["NodeManagerAddress"]
    for r in export.results:
        assert r.status == "ok", r.reason
        assert r.node.startswith(node) and r.kind == kind.kind
        same = local[r.method]
        assert r.size_bytes == same.size_bytes and r.ppl == pytest.approx(same.ppl, rel=1e-4)
    assert export.recommendation == kind.recommendation

    assert export.plan is None and kind.plan is not None  # the plan is the kind's, measured on its node
    (row,) = [r for r in kind.plan.plans if r.method == "gguf-q8_0"]
    assert row.projection is not None and row.projection.label == "projected"
    assert kind.target is not None and export.target == kind.target and kind.target.model == BUNDLED.name
    slices = [e for e in events if isinstance(e, Progress) and "@2L" in e.method]
    assert slices and all(e.method.endswith(f"@ {kind.nodes[0]}") for e in slices)
    assert session.trials() == len(export.results) + len(row.projection.layers_measured)


def _ray_task_processes() -> list:
    """Ray worker processes running a trial task (Ray titles a worker after the task it runs)."""
    return [p for p in psutil.process_iter(["cmdline"]) if " ".join(p.info["cmdline"] or []).startswith("ray::trial_here")]


def test_a_killed_ray_worker_fails_that_trial_and_keeps_the_others(fresh_ray, mock_backend):
    session = _session(["mock-passthrough", "mock-hang", "fp32"], cluster="local")
    killed = []
    for event in session.events():
        if isinstance(event, Progress) and event.method.startswith("mock-hang") and event.step == "quantize":
            time.sleep(1)  # into its hang
            killed = _ray_task_processes()
            for proc in killed:
                proc.kill()  # a node's worker dying mid-trial, as SIGKILL leaves it
    assert killed, "no Ray worker was running the trial"
    results = {r.method: r for r in session.export().results}
    assert results["mock-passthrough"].status == "ok" and results["fp32"].status == "ok"
    assert results["mock-hang"].status == "failed" and "died: WorkerCrashedError" in results["mock-hang"].reason
    deadline = time.monotonic() + 20
    while trial_processes(with_forkservers=True) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not trial_processes(with_forkservers=True)


@pytest.fixture
def two_nodes(tmp_path, monkeypatch):
    """A head and a worker node on this machine, each started by `ray start` as a team would on two machines (token
    authentication off: nothing here listens beyond this machine's own addresses, and the nodes stop at the end)."""
    import shutil
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    import sys

    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))  # the venv's, where it is not on PATH
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    import os

    def env(name):  # each node its own cache, as on two machines
        return {**os.environ, "QADVISOR_CACHE": str(tmp_path / name)}

    subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", *common], check=True,
                   capture_output=True, timeout=120, env=env("head"))
    try:
        subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}", '--resources={"pinned": 1}', *common],
                       check=True, capture_output=True, timeout=120, env=env("worker"))
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)


def _node_with(resource: str, address: str) -> str:
    """The id of the node that has `resource`, asked by a driver of its own (a driver's Ray state outlives
    ray.shutdown() enough to break a later local Ray in this process)."""
    import subprocess
    import sys

    code = (f"import ray; ray.init(address={address!r}, log_to_driver=False); "
            f"print(*[n['NodeID'] for n in ray.nodes() if n['Alive'] and n['Resources'].get({resource!r})])")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          timeout=120).stdout.split()[-1]


def test_trials_reach_both_nodes_and_identical_nodes_fold_into_one_kind(two_nodes, tmp_path):
    """As a user runs it: `qadvisor --auto --cluster HOST:PORT` in its own process, against two `ray start` nodes."""
    from qadvisor.schemas.export import load_export
    from tests.conftest import run_cli

    proc = run_cli("--auto", "--cluster", two_nodes, "--methods", "fp32,gguf-q4_k_m,gguf-q8_0", "--repeats", "1",
                   "--decode-tokens", "8", "--pin", "gguf-q8_0=pinned", "--export", str(tmp_path / "run.json"),
                   "--keep-models", str(tmp_path / "keep"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    export = load_export(tmp_path / "run.json")
    assert len({r.node for r in export.results}) == 2 and all(r.status == "ok" for r in export.results)
    assert len(export.results) == 5 and len(export.kinds) == 1 and len(export.kinds[0].nodes) == 2
    pinned = [r.node for r in export.results if r.method == "gguf-q8_0"]  # only the node started with the resource
    assert len(pinned) == 1 and pinned[0].endswith(f"({_node_with('pinned', two_nodes)[:8]})")
    folded = kind_results(export, export.kinds[0].kind)  # one row per method for the advice and the table
    assert sorted(r.method for r in folded) == ["fp32", "gguf-q4_k_m", "gguf-q8_0"]
    assert export.kinds[0].recommendation.method in ("fp32", "gguf-q4_k_m", "gguf-q8_0")
    assert "2 nodes" in proc.stdout and "Token authentication" not in proc.stderr
    for method in ("fp32", "gguf-q4_k_m"):  # made on one node, taken from the object store by the other
        made = sorted(r.cached for r in export.results if r.method == method)
        assert made == [False, True], (method, proc.stdout[-3000:])
    # one reference for the kind: computed on one node, sent into the other's cache
    assert export.kinds[0].reference_node in export.kinds[0].nodes
    assert all((tmp_path / node / "reference").is_dir() for node in ("head", "worker"))
    # --keep-models: each node's models in a folder of its own, the pinned method on its node only
    kept = sorted(p.relative_to(tmp_path / "keep").parts for p in (tmp_path / "keep").glob("*/*") if p.is_dir())
    assert len({node for node, _ in kept}) == 2, kept
    assert sorted(m for _, m in kept) == ["fp32", "fp32", "gguf-q4_k_m", "gguf-q4_k_m", "gguf-q8_0"], kept


async def test_the_tui_runs_on_a_cluster_and_advises_per_kind(fresh_ray, mock_backend):
    import argparse

    from qadvisor.tui.app import QAdvisorApp
    from qadvisor.tui.launch import tui_inputs
    from qadvisor.tui.screens import RecommendationScreen

    app = QAdvisorApp(**vars(tui_inputs(argparse.Namespace(model=None, load=None))))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("n")
        methods = app.screen.query_one("#methods")
        methods.deselect_all()
        methods.select("mock-passthrough")
        app.screen.query_one("#cluster").value = "local"
        app.screen.query_one("#pin").value = "mock-passthrough=CPU"  # a resource every Ray node has
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        export = app.export
        errors = [str(w.render()) for w in app.screen.query("#form-error")]
        assert export is not None and len(export.kinds) == 1, (type(app.screen).__name__, errors)
        (result,) = export.results
        assert result.status == "ok" and app.screen.panel(f"mock-passthrough @ {result.node}").has_class("ok")
        await pilot.press("n")
        assert isinstance(app.screen, RecommendationScreen)
        assert "On " in app.screen.query_one("#advice").source

