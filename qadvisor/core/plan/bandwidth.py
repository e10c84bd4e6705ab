"""This machine as a planning target: memory and a measured memory bandwidth."""

from __future__ import annotations

import time
from typing import Callable

import psutil

from qadvisor.core.hardware import physical_cores
from qadvisor.format import MIB
from qadvisor.schemas.plan import Target

PROBE_BYTES = 256 * MIB  # larger than the last-level caches of server CPUs (EPYC: up to 256 MiB)


def probe_bandwidth_gb_s(threads: int | None = None, repeats: int = 3) -> float:
    """Copy a 256 MiB buffer a few times, split among `threads` (the trials' threads: one core alone reaches a
    fraction of a server's bandwidth); best run, counting the read and the write (about 0.2 s)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    threads = threads or physical_cores()
    src = np.ones(PROBE_BYTES // 8, dtype=np.float64)
    dst = np.empty_like(src)
    bounds = np.linspace(0, src.size, threads + 1, dtype=np.int64)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:  # numpy copies without the GIL: the threads run side by side
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(lambda part: np.copyto(*part), parts))
            best = min(best, time.perf_counter() - start)
    return 2 * PROBE_BYTES / best / 1e9


def _gpu_target() -> Target | None:
    """The first NVIDIA GPU, with bandwidth from its memory clock and bus width (NVML), when one is present."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library: plan for the CPU
        return None
    try:
        count = pynvml.nvmlDeviceGetCount()
        if not count:
            return None
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        mem_mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        bus_bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        return Target(name=name.decode() if isinstance(name, bytes) else name, count=count,
                      memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                      bandwidth_gb_s=round(2 * mem_mhz * 1e6 * bus_bits / 8 / 1e9, 1),
                      bandwidth_source="NVML: 2 × memory clock × bus width", device_type="gpu")
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def this_machine_target(ram_available: int | None = None, probe: Callable[[], float] | None = None,
                        threads: int | None = None) -> Target:
    gpu = _gpu_target()
    if gpu is not None:
        return gpu
    threads = threads or physical_cores()
    return Target(name="this", count=1, memory_bytes=ram_available or psutil.virtual_memory().available,
                  bandwidth_gb_s=round((probe or (lambda: probe_bandwidth_gb_s(threads)))(), 1),
                  bandwidth_source=f"measured: {PROBE_BYTES // MIB} MiB copy on {threads} threads, as the trials "
                                   "run", device_type="cpu")


DISK_PROBE_BYTES = 512 * MIB


def probe_disk_read_gb_s(path) -> float | None:
    """Read up to 512 MiB of `path` after asking the kernel to drop its cached pages (what mmap streaming of a model
    larger than RAM pays per token). None when the file stayed cached (the read ran at memory speed)."""
    import os

    fd = os.open(str(path), os.O_RDONLY)
    try:
        size = min(os.fstat(fd).st_size, DISK_PROBE_BYTES)
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        start, done = time.perf_counter(), 0
        while done < size:
            chunk = os.pread(fd, 16 * MIB, done)
            if not chunk:
                break
            done += len(chunk)
        seconds = time.perf_counter() - start
    finally:
        os.close(fd)
    rate = done / seconds / 1e9 if seconds > 0 else None
    return rate if rate and done >= 64 * MIB and rate < 0.5 * probe_bandwidth_gb_s() else None
