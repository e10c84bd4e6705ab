"""`qadvisor doctor`: does each installed backend quantize and decode here, on its fast path or a safe one?

Each backend's stand-in method runs as a real trial (its own processes, the fault fallbacks) on the bundled model,
quantized afresh — never a cached file — and scored on one short window, so GPTQ's and AWQ's solvers run on a small
calibration as they do in a run. What it finds is kept beside the fallback verdicts, so runs do not probe again
and the TUI's hardware screen shows the same table.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Callable

from qadvisor.core import paths
from qadvisor.core.contention import contended, cpu_busy_now
from qadvisor.core.measure import modelio
from qadvisor.core.measure.jobs import EvalSettings
from qadvisor.core.measure.runner import Run, RunRequest
from qadvisor.errors import UserError
from qadvisor.quantizers import registry
from qadvisor.schemas.doctor import DoctorReport, DoctorRow
from qadvisor.schemas.events import Result
from qadvisor.schemas.hardware import HardwareInfo
from qadvisor.schemas.jsonfile import write_text_atomic
from qadvisor.schemas.result import TrialResult

SETTINGS = EvalSettings(window=64, windows=1, prompt_tokens=32, decode_tokens=8, repeats=1, min_measure_s=0.0)
CALIBRATION_PARAGRAPHS = 8  # GPTQ's and AWQ's fewest samples (gptq.MIN_SAMPLES): their solvers run in seconds
REPORT_FILE = "doctor.json"


def stand_in_methods() -> dict[str, str]:
    """Backend → the method that stands for it (each backend's catalogue names its own)."""
    return {name: b.stand_in for name, b in registry.backends().items() if b.stand_in}


def report_path() -> Path:
    return paths.probe_dir(paths.default_cache_dir()) / REPORT_FILE


def doctor_backends(text: str | None) -> list[str] | None:
    """`--backends bnb,gptq` → those names, checked against the backends that have a stand-in (None: every one)."""
    if not text:
        return None
    known = stand_in_methods()
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        raise UserError(f"--backends {text!r}: {', '.join(unknown) or 'none given'}; the backends are "
                        f"{', '.join(known)}", field="backends")
    return chosen


def run_doctor(hardware: HardwareInfo, threads: int, say: Callable[[str], None] = lambda line: None,
               device: str = "cpu", only: list[str] | None = None) -> DoctorReport:
    """Every backend's stand-in (or `only` those backends'), measured here; the report is kept (report_path) and
    returned."""
    started = time.perf_counter()
    busy = cpu_busy_now(1.0)
    ready = {b.backend for b in registry.availability(has_cuda=device == "cuda") if b.available}
    stand_ins = {b: m for b, m in stand_in_methods().items() if only is None or b in only}
    methods = [m for b, m in stand_ins.items() if b in ready]
    # AWQ's calibrated scale search alone took 1.5-4 min on 2 cores: a slow machine is no failing backend
    request = RunRequest(methods=methods, settings=SETTINGS.model_copy(update={"threads": threads, "device": device}),
                         trial_timeout_s=600, reuse_cache=False, calib_text=_small_calibration())
    run = Run(request, hardware)
    backend_of = {m: b for b, m in stand_ins.items()}
    for event in run.events():
        if isinstance(event, Result):
            say(f"{backend_of[event.result.method]}: {_row(event.result, backend_of).verdict}")
    rows = [_row(r, backend_of) for r in run.results] + [DoctorRow(backend=b, method=m, verdict="not installed")
                                                         for b, m in stand_ins.items() if b not in ready]
    report = DoctorReport(created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                          cpu=hardware.label(device, threads), isa_flags=hardware.isa_flags, threads=threads,
                          cpu_contention=busy, rows=rows, total_s=time.perf_counter() - started)
    write_text_atomic(report_path(), report.model_dump_json(indent=1))
    return report


def _small_calibration() -> Path:
    """The first paragraphs of the bundled calibration text: GPTQ's and AWQ's solvers run on it in seconds."""
    path = report_path().with_name("doctor-calibration.txt")
    text = "\n\n".join(modelio.paragraphs(modelio.bundled_model_dir() / modelio.CALIB_FILE)[:CALIBRATION_PARAGRAPHS])
    write_text_atomic(path, text + "\n")
    return path


def _row(r: TrialResult, backend_of: dict[str, str]) -> DoctorRow:
    row = DoctorRow(backend=backend_of[r.method], method=r.method, verdict="works", seconds=r.total_s)
    if r.status != "ok":
        return row.model_copy(update={"verdict": "fails", "detail": r.reason})
    speed = f"decodes {r.decode_tok_s:,.1f} tok/s" if r.decode_tok_s else "ran"
    spec = registry.spec(r.method)  # a KV stack is no catalogue method: it calibrates nothing
    if spec is not None and registry.backend_for(spec).calibrated:
        speed = f"its solver calibrated on {CALIBRATION_PARAGRAPHS} paragraphs of the bundled text; {speed}"
    if contended(r):
        speed += f" (others took {100 * r.cpu_contention:.0f} % of the CPU meanwhile)"
    if r.safe_config:
        return row.model_copy(update={"verdict": "works with a fallback", "detail": "; ".join(r.notes)})
    return row.model_copy(update={"detail": speed})


def saved_report() -> DoctorReport | None:
    """The last doctor's report on this machine, if one was kept."""
    try:
        return DoctorReport.model_validate_json(report_path().read_text())
    except (OSError, ValueError):
        return None
