"""Safe configurations: what a backend turns off when its fast path crashes on this machine, and the verdicts kept.

Native code can die of a fatal signal on a CPU it was not built or tested on (llama.cpp's AMX kernels: SIGILL on
one machine, SIGSEGV on the next). Such a crash cannot be caught inside the process, so the runner sees the trial
process die, keeps a verdict for the backend's build on this CPU, and runs the trial once more in the next safe
configuration. Later trials and runs on the same build and CPU start there; every result says what was off and why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import signal
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from qadvisor.schemas.jsonfile import write_text_atomic

# the signals of a fault in native code (not SIGKILL: that is the OOM killer or a stop, which no setting avoids)
FATAL_SIGNALS = (signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE)
VERDICT_FILE = "fallback-{backend}-{key}.json"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SafeConfig:
    """One step away from a backend's fast path."""

    name: str  # short, for tables: "no extra buffers"
    turns_off: str  # what a result says ran differently: "llama.cpp's extra buffer types (AMX kernels, repacking)"
    env: dict[str, str] = field(default_factory=dict)  # set before the libraries load: the trial starts fresh
    fp32_work: bool = False  # quantize in fp32 even where the CPU computes bf16 natively


@dataclass(frozen=True)
class Verdict:
    level: int  # how many of the backend's safe configurations are on (0: the fast path)
    signal: str  # what the fast path died of
    method: str  # the trial that showed it

    def note(self, configs: tuple[SafeConfig, ...]) -> str:
        off = "; ".join(c.turns_off for c in configs[: self.level])
        return f"ran without {off}: the faster path crashed on this machine ({self.signal}, seen in {self.method})"


def fatal(returncode: int | None) -> str | None:
    """The fatal signal's name when a process died of one, else None."""
    if returncode is None or returncode >= 0:
        return None
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return None
    return sig.name if sig in FATAL_SIGNALS else None


def cpu_flags() -> str:
    """The CPU's feature flags: a verdict holds for this CPU only."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), platform.processor())


def versions_key(packages: tuple[str, ...]) -> str:
    """The installed versions of `packages` and torch, with this CPU: a new build or another CPU is a new key."""
    found = []
    for name in ("torch", *filter(None, packages)):
        try:
            found.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name}=none")
    return digest("|".join([*found, cpu_flags()]))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def kept(probe_dir: Path | None, backend: str, key: str) -> Verdict | None:
    """The verdict kept for this backend's build on this CPU, or None (the fast path has not crashed here)."""
    if probe_dir is None:
        return None
    try:
        data = json.loads((Path(probe_dir) / VERDICT_FILE.format(backend=backend, key=key)).read_text())
        return Verdict(level=int(data["level"]), signal=str(data["signal"]), method=str(data["method"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def keep(probe_dir: Path | None, backend: str, key: str, verdict: Verdict) -> None:
    if probe_dir is None:
        return
    path = Path(probe_dir) / VERDICT_FILE.format(backend=backend, key=key)
    try:
        write_text_atomic(path, json.dumps(vars(verdict)))
    except OSError as exc:  # a cache that cannot be written to costs a crash per run, not the result
        log.warning("fallback verdict not kept in %s: %s", path.parent, exc)


def restore(probe_dir: Path | None, backend: str, key: str, verdict: Verdict | None) -> None:
    """Put back the verdict kept before a retry that did not help (None: there was none)."""
    if verdict is not None:
        keep(probe_dir, backend, key, verdict)
    elif probe_dir is not None:
        (Path(probe_dir) / VERDICT_FILE.format(backend=backend, key=key)).unlink(missing_ok=True)
