"""A trial's process: started fresh or forked warm, in its own session, its events relayed from a pipe until it
exits, is cancelled or times out; a process that outlives its run is stopped with its whole group."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from qadvisor.core.measure.forkserver import ForkServer
from qadvisor.core.measure.jobs import Job
from qadvisor.quantizers import fallback, registry
from qadvisor.schemas.events import Error, Event, EventEnvelope, Progress, Result


def trial_env(threads: int) -> dict[str, str]:
    return dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")


WARM_START = "start the warm trial process (torch and transformers, imported once for every trial)"


def spawn(job: Job, work_dir: Path, cancel: threading.Event, timeout_s: float, forkserver: ForkServer | None = None,
           log_path: Path | None = None, died: list | None = None) -> Iterator[Event]:
    """Start `qadvisor.core.measure.worker` for one job and yield its events until it exits, is cancelled or times out. The
    job's output is appended to `log_path` (default: beside the job file); a fatal signal it died of goes in `died`."""
    name, stage = job.method or "reference", ("reference" if job.work == "reference" else "trial")
    job_file = work_dir / f"{name}.{job.work}.json"
    job_file.write_text(job.model_dump_json())
    log_path = log_path or work_dir / f"{name}.log"
    env = _safe_env(job)
    forkserver = forkserver if not env else None  # a safe configuration's environment must be there before torch loads
    if forkserver is not None and not forkserver.ready:  # seconds of silence otherwise (8 s on 2 slow cores)
        yield Progress(method=name, step="load", message=WARM_START, stage=stage)
    read_fd, write_fd = os.pipe()
    with open(log_path, "ab") as log:
        proc = _start(job_file, work_dir, write_fd, log, job.settings.threads, forkserver, env)
    os.close(write_fd)
    ended, reported = False, []  # ended: the worker closed its pipe, it is exiting on its own
    try:
        ended = yield from _relay(read_fd, cancel, time.monotonic() + timeout_s, reported)
    finally:  # cancel, timeout, Ctrl-C, a closed generator: the trial (its own session: no SIGINT) never outlives us
        if not ended:
            _stop(proc)
    if not ended:
        if not cancel.is_set():
            yield Error(method=name, message=f"timed out after {timeout_s:.0f} s; log: {log_path}", stage=stage)
        return
    code = proc.wait()
    if died is not None and fallback.fatal(code):
        died.append(fallback.fatal(code))
    yield from _ending(proc, code, reported, name, log_path, stage)


def _safe_env(job: Job) -> dict[str, str]:
    """What the job's safe configurations set in the environment (empty at the fast path)."""
    if job.recipe is None or job.safe_level <= 0:
        return {}
    configs = registry.backend_for(job.recipe.weights).safe_configs[: job.safe_level]
    return {k: v for c in configs for k, v in c.env.items()}


def _ending(proc, code: int, reported: list, name: str, log_path: Path, stage: str = "trial") -> Iterator[Event]:
    """The error of a job whose process exited without reporting a result, if any."""
    if getattr(proc, "orphaned", False):  # nobody saw how the trial ended
        _stop(proc)  # in case it outlived the warm process
        if not reported:
            yield Error(method=name, message="the warm process that started the trial ended during it (killed, or "
                                             f"out of memory) and the trial with it; log: {log_path}", stage=stage)
    elif code < 0:
        # nobody here sends SIGKILL to a running trial but _stop, which sets `ended`: the kernel's OOM killer does
        oom = " — killed by the system, most likely out of memory (the OOM killer)" if code == -signal.SIGKILL else ""
        yield Error(method=name, message=f"the trial process crashed ({signal.Signals(-code).name}{oom}); "
                                         f"log: {log_path}", stage=stage)
    elif code != 0:
        log_tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        yield Error(method=name, message=f"exited with code {code}: {log_tail[0][:300]}; log: {log_path}", stage=stage)


def _start(job_file: Path, work_dir: Path, write_fd: int, log, threads: int, forkserver: ForkServer | None,
           extra_env: dict[str, str] | None = None):
    """A fresh process for the job: forked warm when there is a forkserver (a fresh interpreter if it is gone), in its
    own session, output to the job's log, events to `write_fd`."""
    if forkserver is not None:
        try:
            return forkserver.spawn(str(job_file), str(work_dir), write_fd, log.fileno())
        except OSError:
            pass
    env = dict(trial_env(threads), QADVISOR_EVENT_FD=str(write_fd), **(extra_env or {}))
    return subprocess.Popen([sys.executable, "-m", "qadvisor.core.measure.worker", str(job_file)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, pass_fds=(write_fd,), env=env,
                            cwd=work_dir, start_new_session=True)  # cwd: GPTQModel writes logs/ there


def _relay(read_fd: int, cancel: threading.Event, deadline: float, reported: list):
    """Yield the worker's events from its pipe; True when it closed, False on cancel or past the deadline. A Result
    among them is also put in `reported`."""
    buffer = b""
    with selectors.DefaultSelector() as sel, os.fdopen(read_fd, "rb", buffering=0) as pipe:
        sel.register(pipe, selectors.EVENT_READ)
        while not cancel.is_set() and time.monotonic() < deadline:
            if not sel.select(timeout=0.2):
                continue
            chunk = pipe.read(65536)
            if not chunk:
                return True
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    event = EventEnvelope.model_validate_json(line).event
                except ValidationError:
                    continue  # not an event; the log file keeps everything else
                if isinstance(event, Result):
                    reported.append(event)
                yield event
    return False


def _stop(proc: subprocess.Popen) -> None:
    """Stop the trial's whole process group: first politely, then for sure."""
    for sig, wait_s in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait_s)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
