import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "assets" / "qwen2-tiny-stdlib"


def run_cli(*args: str, env: dict | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run `python -m qadvisor ...` as a user would, capturing both streams."""
    return subprocess.run(
        [sys.executable, "-m", "qadvisor", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )


def trial_processes(with_forkservers: bool = False) -> list:
    """Running trial processes: started fresh (`qadvisor.core.measure.worker`) or forked by a warm process
    (`qadvisor.core.measure.forkserver` under a parent that is one too); `with_forkservers` adds the warm processes themselves."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "qadvisor.core.measure.worker" in cmdline:
            found.append(proc)
        elif "qadvisor.core.measure.forkserver" in cmdline:
            try:
                forked = "qadvisor.core.measure.forkserver" in " ".join(psutil.Process(proc.info["ppid"]).cmdline())
            except psutil.Error:
                forked = False
            if forked or with_forkservers:
                found.append(proc)
    return found


@pytest.fixture
def mock_backend(monkeypatch):
    """The MOCK backend (never offered to users) switched on for one test."""
    from qadvisor.quantizers import registry

    monkeypatch.setenv(registry.MOCK_ENV, "1")
    registry.backends.cache_clear()
    yield
    registry.backends.cache_clear()


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    # Session-wide, so module fixtures see it too: no test reads a stale cache or writes the user's.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QADVISOR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield


def pytest_collection_modifyitems(items):
    """Everything under tests/integration runs real backends: `pytest -m "not slow"` is the fast loop."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.slow)
