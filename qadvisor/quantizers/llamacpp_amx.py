"""Whether llama.cpp's AMX kernels run on this machine: a probe in a child process before a model loads, its
verdict kept with the other fallback verdicts (quantizers.fallback).

llama-cpp-python builds llama.cpp for the CPU it is installed on, so on a CPU with AMX the products of Q8_0 / Q4_K /
Q6_K weights with more than one token go through ggml's AMX kernels. Built by GCC 12 (Debian 12's) those kernels load
a tile configuration with no tile shapes in it (GCC drops the stores that fill it in before `ldtilecfg`; -fno-dse
keeps them), and the first prompt the model reads dies: of SIGILL on one machine, of SIGSEGV on another
(benchmarks/RESULTS.md, Machine C). A child process reads a few tokens first, so even a process that loads llama.cpp
itself (a test, the bare loop) never takes that path where it dies; where the child dies of any fatal signal,
llama.cpp runs in its first safe configuration (extra buffer types off) and the result says so.

    python -m qadvisor.quantizers.llamacpp_amx MODEL.gguf THREADS    # the probe itself: exit 0 when it ran
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from qadvisor.quantizers import fallback

BACKEND = "llamacpp"
PROBED_BY = "a probe of llama.cpp's AMX kernels"
PROBE_TOKENS = 8  # more than one: a single token takes the kernels' path without tiles
PROBE_TIMEOUT_S = 120

log = logging.getLogger(__name__)
_levels: dict[str, int] = {}  # this process's answers, by build key


def amx_in_build() -> bool:
    """Whether this llama.cpp was built with its AMX kernels (its own account of its build)."""
    import llama_cpp

    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


def build_key() -> str:
    """The llama.cpp library files (path, size and time: a rebuild is a new key) and this CPU, found without loading
    the library (the runner asks before any trial)."""
    spec = importlib.util.find_spec("llama_cpp")
    root = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    files = sorted(p for p in (root / "lib").glob("libggml-cpu*") if p.is_file()) if root else []
    stats = [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files] or [str(root)]
    return fallback.digest("|".join([*stats, fallback.cpu_flags()]))


def probed_level(model_path: Path, threads: int, probe_dir: Path | None) -> int:
    """The safe level llama.cpp loads at here: a kept verdict's; else, for a build with AMX kernels, 1 where a child
    reading a prompt dies of a fatal signal and 0 where it runs (kept either way, so each build and CPU is probed
    once); 0 where the probe fails some other way (the trial itself then says how)."""
    key = build_key()
    if key in _levels:
        return _levels[key]
    verdict = fallback.kept(probe_dir, BACKEND, key)
    if verdict is None and amx_in_build():
        died = _probe(model_path, threads)
        if died is not None:
            verdict = fallback.Verdict(level=1 if died else 0, signal=died, method=PROBED_BY)
            fallback.keep(probe_dir, BACKEND, key, verdict)
    _levels[key] = verdict.level if verdict else 0
    return _levels[key]


def _probe(model_path: Path, threads: int) -> str | None:
    """Read a few tokens with llama.cpp's defaults in a child process: the fatal signal it died of, '' if it ran,
    None if it failed otherwise."""
    try:
        done = subprocess.run([sys.executable, "-m", __name__, str(model_path), str(threads)],
                              capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    died = fallback.fatal(done.returncode)
    if died:
        log.warning("llama.cpp's AMX kernels crashed in a probe (%s): running without extra buffer types", died)
        return died
    return "" if done.returncode == 0 else None


@contextmanager
def safe_params(level: int):
    """llama.cpp's model parameters at a safe level: 1 turns its extra buffer types off (AMX kernels, weight
    repacking), 2 memory-mapping the file too. llama-cpp-python's `Llama` has no argument for `use_extra_bufts`; it
    takes its model parameters from `llama_model_default_params`, which this answers while a model is built."""
    if level <= 0:
        yield
        return
    from llama_cpp import llama_cpp as lib

    defaults = lib.llama_model_default_params

    def params():
        p = defaults()
        p.use_extra_bufts = False
        if level >= 2:
            p.use_mmap = False
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = defaults


def _read_a_prompt(model_path: str, threads: int) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=model_path, n_ctx=64, n_batch=64, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    llm.eval(list(range(1, PROBE_TOKENS + 1)))


if __name__ == "__main__":
    _read_a_prompt(sys.argv[1], int(sys.argv[2]))
