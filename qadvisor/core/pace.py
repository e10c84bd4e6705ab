"""How fast this machine runs right now, told by a fixed workload rather than the kernel's counters.

A shared host slows a guest in ways its pressure counters do not show: two identical runs have decoded 2× apart
with `cpu_contention` at zero. A fixed, short, compute-bound task — the same instructions every time — timed at
the run's start and again around each timing says how much slower the machine ran meanwhile. Its cost (about
0.1 s a check) is reported with the run.
"""

from __future__ import annotations

import time

ELEMENTS = 1 << 17  # per thread: a few milliseconds of arithmetic that stays in the core's caches
ROUNDS = 5  # the best of a few: one scheduler hiccup must not mark a whole timing slow
SLOW = 1.2  # the workload this much slower than at the start: the timing is re-timed, then marked


def workload_s(threads: int = 1) -> float:
    """Seconds for the fixed workload on `threads` threads side by side (numpy releases the GIL), best of ROUNDS."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    arrays = [np.linspace(0.0, 1.0, ELEMENTS) for _ in range(max(1, threads))]

    def task(x):
        for _ in range(8):
            x = np.sin(x) * 0.5 + 0.25
        return float(x[0])

    best = float("inf")
    with ThreadPoolExecutor(len(arrays)) as pool:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            list(pool.map(task, arrays))
            best = min(best, time.perf_counter() - start)
    return best


def with_baseline(settings):
    """Evaluation settings (core.measure.jobs.EvalSettings) with the workload's pace at the run's start, on the
    trials' threads; a GPU's timings and a run that times nothing are left unchecked."""
    if settings.device != "cpu" or not settings.benchmark or settings.pace_baseline_s is not None:
        return settings  # a GPU, nothing timed, or a baseline the caller took at its own start
    return settings.model_copy(update={"pace_baseline_s": workload_s(settings.threads)})


class PaceCheck:
    """Around one timing: the workload before and after, against the run's start (`baseline_s`); `ratio()` is how
    many times slower the machine ran (1.0 as at the start), None without a baseline."""

    def __init__(self, baseline_s: float | None, threads: int):
        self.baseline_s, self.threads = baseline_s, threads
        self.before = workload_s(threads) if baseline_s else None

    def ratio(self) -> float | None:
        if not self.baseline_s or self.before is None:
            return None
        return max(self.before, workload_s(self.threads)) / self.baseline_s


def ran_slow(ratio: float | None) -> bool:
    """Whether a figure was timed while the machine ran slow (SLOW or more, by the workload): it is marked."""
    return ratio is not None and ratio >= SLOW
