"""`qadvisor doctor` as a user runs it: a row per backend, each a verdict, the report kept for runs and the TUI."""

from qadvisor.app.doctor import STAND_INS, saved_report
from tests.conftest import run_cli


def test_doctor_tries_every_backend_and_keeps_its_report(tmp_path):
    proc = run_cli("doctor", env={"QADVISOR_CACHE": str(tmp_path)}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Backends tried on a tiny model" in proc.stdout and "threads" in proc.stdout
    import os

    os.environ["QADVISOR_CACHE"], old = str(tmp_path), os.environ["QADVISOR_CACHE"]
    try:
        report = saved_report()
    finally:
        os.environ["QADVISOR_CACHE"] = old
    assert report is not None and [r.backend for r in report.rows if r.verdict != "not installed"]
    assert {r.backend for r in report.rows} == set(STAND_INS)
    assert all(r.verdict in ("works", "works with a fallback") for r in report.rows if r.verdict != "not installed"), \
        [(r.backend, r.detail) for r in report.rows]
    assert 0.0 <= report.cpu_contention <= 1.0
