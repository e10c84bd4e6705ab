"""Whether llama.cpp's AMX kernels run on this machine: a probe in a child process, its verdict kept.

llama-cpp-python builds llama.cpp for the CPU it is installed on, so on a CPU with AMX the products of Q8_0 / Q4_K /
Q6_K weights with more than one token go through ggml's AMX kernels. Built by GCC 12 (Debian 12's) those kernels load
a tile configuration with no tile shapes in it: GCC drops the stores that fill it in before `ldtilecfg` (the same
function compiled alone shows it; with -fno-dse it keeps them), and the first prompt the model reads dies with SIGILL
(benchmarks/RESULTS.md, session 13: every GGUF trial of a run crashed so, while torch's own AMX kernels ran). A crash
cannot be caught inside the process, so a child process reads a few tokens first; where it dies of SIGILL, llama.cpp
runs without its extra buffer types (the AMX kernels, and the weight repacking that shares the switch) and every
result it gives says so.

    python -m qadvisor.quantizers.llamacpp_amx MODEL.gguf THREADS    # the probe itself: exit 0 when it ran
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from qadvisor.models.jsonfile import write_text_atomic

NOTE = ("llama.cpp ran without its AMX kernels and weight repacking: in this build they crash on this CPU (SIGILL), as "
        "GCC 12 builds them; llama-cpp-python rebuilt with -fno-dse runs them (README: llama.cpp)")
PROBE_TOKENS = 8  # more than one: a single token takes the kernels' path without tiles
PROBE_TIMEOUT_S = 120
VERDICT_FILE = "llamacpp-amx-{key}.json"

log = logging.getLogger(__name__)
_verdicts: dict[str, bool] = {}  # this process's answers, by key


def amx_in_build() -> bool:
    """Whether this llama.cpp was built with its AMX kernels (its own account of its build)."""
    import llama_cpp

    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


def known_fault(verdict_dir: Path) -> bool:
    """What an earlier run's probe found for this build and machine, without probing: True only where it crashed."""
    return amx_in_build() and bool(_saved(verdict_dir / VERDICT_FILE.format(key=_build_key())))


def kernels_fault(model_path: Path, threads: int, verdict_dir: Path | None) -> bool:
    """True where this llama.cpp's AMX kernels crash on this CPU: asked of a child process once per build and
    machine, the answer kept in `verdict_dir` (None: kept for this process only)."""
    if not amx_in_build():
        return False
    key = _build_key()
    if key in _verdicts:
        return _verdicts[key]
    saved = verdict_dir / VERDICT_FILE.format(key=key) if verdict_dir is not None else None
    faults = _saved(saved)
    if faults is None:
        faults = _probe(model_path, threads)
        if faults is None:  # the probe failed some other way: the trial itself will say how
            return False
        if saved is not None:
            _keep(saved, faults, model_path)
    _verdicts[key] = faults
    return faults


def _keep(path: Path, faults: bool, model_path: Path) -> None:
    try:
        write_text_atomic(path, json.dumps({"faults": faults, "probed": str(model_path)}))
    except OSError as exc:  # a cache that cannot be written to costs a probe per trial, not the trial
        log.warning("llama.cpp AMX verdict not kept in %s: %s", path.parent, exc)


def _saved(path: Path | None) -> bool | None:
    try:
        return bool(json.loads(path.read_text())["faults"]) if path is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _build_key() -> str:
    """The llama.cpp library file (its path, size and time: a rebuild is a new key) and this CPU."""
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    files = sorted(p for p in lib.glob("libggml-cpu*") if p.is_file()) or [Path(llama_cpp.__file__)]
    stats = [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return hashlib.sha256("|".join([*stats, _cpu_flags()]).encode()).hexdigest()[:16]


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((line for line in text.splitlines() if line.startswith("flags")), platform.processor())


def _probe(model_path: Path, threads: int) -> bool | None:
    """Read a few tokens with llama.cpp's defaults in a child process: True if it died of SIGILL, False if it ran,
    None if it failed otherwise."""
    try:
        done = subprocess.run([sys.executable, "-m", __name__, str(model_path), str(threads)],
                              capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode == -signal.SIGILL:
        log.warning("llama.cpp's AMX kernels crashed in a probe (SIGILL): running without extra buffer types")
        return True
    return False if done.returncode == 0 else None


@contextmanager
def without_extra_buffers(off: bool):
    """llama-cpp-python's `Llama` has no argument for llama.cpp's `use_extra_bufts`; it takes its model parameters
    from `llama_model_default_params`, which this answers with the switch off while a model is built."""
    if not off:
        yield
        return
    from llama_cpp import llama_cpp as lib

    defaults = lib.llama_model_default_params

    def params():
        p = defaults()
        p.use_extra_bufts = False
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
