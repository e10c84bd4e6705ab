"""How much of the CPU other processes took while a figure was timed: 0 on a quiet machine, near 1 when they had it.

On a shared 2-core machine one busy process made every decode figure up to 100× low with no sign in the spread:
each OpenMP parallel region waited for a time slice. Linux's pressure stall information says it directly: the share
of the window in which some runnable task waited for a CPU ("some" in /proc/pressure/cpu), plus the share the
hypervisor stole (/proc/stat). Without PSI the process's own CPU time against its threads × the wall time stands in.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from pathlib import Path

from qadvisor.core import pace
from qadvisor.schemas.result import TrialResult

PSI_FILE = Path("/proc/pressure/cpu")
STAT_FILE = Path("/proc/stat")
LIMIT = 0.10  # above this share a figure is suspect: timed again once, then marked


def _psi_some_us() -> int | None:
    """Microseconds, since boot, in which some runnable task waited for a CPU; None where the kernel has no PSI."""
    try:
        first = PSI_FILE.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(part.split("=", 1) for part in first.split()[1:] if "=" in part)
    try:
        return int(fields["total"])
    except (KeyError, ValueError):
        return None


def _steal() -> tuple[int, int]:
    """(steal, all) jiffies of every CPU since boot, from /proc/stat; (0, 0) where it is not there."""
    try:
        values = [int(v) for v in STAT_FILE.read_text().splitlines()[0].split()[1:]]
    except (OSError, IndexError, ValueError):
        return 0, 0
    return (values[7] if len(values) > 7 else 0), sum(values[:8])


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuWatch:
    """Started before a timed window; `share()` after it says how much of the CPU others took meanwhile."""

    def __init__(self, threads: int):
        self.threads = max(1, threads)
        self.wall, self.psi, self.steal, self.cpu = time.monotonic(), _psi_some_us(), _steal(), _own_cpu_s()

    def share(self) -> float:
        wall = max(time.monotonic() - self.wall, 1e-9)
        steal_now = _steal()
        ticks = steal_now[1] - self.steal[1]
        stolen = (steal_now[0] - self.steal[0]) / ticks if ticks > 0 else 0.0
        psi = _psi_some_us()
        if psi is not None and self.psi is not None:
            waited = (psi - self.psi) / 1e6 / wall
        else:  # the threads ran less than the window: the rest went to others
            waited = 1.0 - (_own_cpu_s() - self.cpu) / (self.threads * wall)
        return min(1.0, max(0.0, waited + stolen))


def contended(r: TrialResult) -> bool:
    """Whether other processes took more than LIMIT of the CPU while this result's speed was timed (twice)."""
    return r.status == "ok" and (r.cpu_contention or 0.0) > LIMIT


def ran_slow(r: TrialResult) -> bool:
    """Whether the machine ran slow (core.pace's fixed workload) while this result's speed was timed (twice)."""
    return r.status == "ok" and pace.ran_slow(r.pace_ratio)


def marked(r: TrialResult) -> bool:
    """A speed timed on a busy CPU or a slow machine: marked wherever it is shown."""
    return contended(r) or ran_slow(r)


def machine_words(cpu_contention: float | None, pace_ratio: float | None) -> str:
    """What a mark on a timing means (`others took 45 % of the CPU, 1.40× slower than at the start`); '' where the
    machine was quiet."""
    busy = f"others took {100 * cpu_contention:.0f} % of the CPU" if (cpu_contention or 0) > LIMIT else ""
    slow = f"{pace_ratio:.2f}× slower than at the start" if pace.ran_slow(pace_ratio) else ""
    return ", ".join(filter(None, [busy, slow]))


def slow_labels(results: list[TrialResult]) -> list[str]:
    """`method (1.4× slower)` for each result timed while the machine ran slow."""
    return [f"{r.method} ({r.pace_ratio:.2f}× slower)" for r in results if ran_slow(r)]


def busy_labels(results: list[TrialResult]) -> list[str]:
    """`method (share %)` for each result timed on a busy CPU: what the table's line and the advice name."""
    return [f"{r.method} ({100 * r.cpu_contention:.0f} %)" for r in results if contended(r)]


def cpu_busy_now(seconds: float = 1.0) -> float:
    """The share of the CPU others take right now, watched for `seconds` while this process sleeps (`doctor`)."""
    watch = CpuWatch(os.cpu_count() or 1)
    time.sleep(seconds)
    if watch.psi is None:  # a sleeping process says nothing of the others without PSI: the load average does
        return min(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    return watch.share()


# a decode this far from the median of it and this machine's earlier figures of the same model is marked
SPREAD = 0.15


def drift(r: TrialResult) -> float | None:
    """How far this decode is from the median of it and this machine's earlier figures (0.25: 25 % above); None
    without earlier figures."""
    if r.status != "ok" or not r.decode_earlier or not r.decode_tok_s:
        return None
    return r.decode_tok_s / statistics.median([*r.decode_earlier, r.decode_tok_s]) - 1


def drifted(r: TrialResult) -> bool:
    """A decode more than SPREAD from this machine's earlier runs of the same model: marked wherever it is shown."""
    moved = drift(r)
    return moved is not None and abs(moved) > SPREAD


def drift_labels(results: list[TrialResult]) -> list[str]:
    """`method 108.4 tok/s (+75 %; earlier here: 62.1, 56.4)` for each decode that moved from this machine's earlier
    runs with no busy CPU or slow machine to explain it (those are marked ⚠ instead)."""
    return [f"{r.method} {r.decode_tok_s:.1f} tok/s ({100 * drift(r):+.0f} %; earlier here: "
            f"{', '.join(f'{x:.1f}' for x in r.decode_earlier)})" for r in results if drifted(r) and not marked(r)]
