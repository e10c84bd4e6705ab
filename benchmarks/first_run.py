"""A new machine's first `qadvisor --auto`, then the run after it, as a newcomer meets them: a fresh home directory (no
qadvisor, GPTQModel or hub caches) and a fresh torch compile cache; with --unbuilt, quanto's C++ extension is also
removed from this venv first, as in a new venv. Targets (issue 43): the first run ≤ 60 s, the one after it ≤ 30 s.

    python benchmarks/first_run.py [--methods fp32,gptq-int4,...] [--unbuilt]

Prints each run's wall time and its "where the time went" table. Run it on the commit before a change and on the
change, one after the other on the same machine, and compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"first": 60.0, "after": 30.0}


def quanto_build_dir() -> Path | None:
    """Where optimum-quanto builds its C++ extension on first use (inside the venv), if it is installed."""
    from importlib.util import find_spec

    try:
        spec = find_spec("optimum.quanto")  # found, not imported: importing it loads torch and prints its noise
    except ModuleNotFoundError:
        return None
    return None if spec is None else Path(spec.origin).parent / "library" / "extensions" / "cpp" / "build"


def timed_run(home: Path, methods: str | None) -> tuple[float, str]:
    """One `qadvisor --auto` with everything cached under `home`: (seconds, its output)."""
    env = {**os.environ, "HOME": str(home), "TORCHINDUCTOR_CACHE_DIR": str(home / "inductor")}
    for key in ("QADVISOR_CACHE", "XDG_CACHE_HOME", "HF_HOME"):  # every cache under the new home
        env.pop(key, None)
    args = [sys.executable, "-m", "qadvisor", "--auto", "--export", str(home / "run.json")]
    started = time.perf_counter()
    proc = subprocess.run(args + (["--methods", methods] if methods else []), env=env, capture_output=True, text=True,
                          check=True)
    return time.perf_counter() - started, proc.stdout


def where_the_time_went(stdout: str) -> str:
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Where the time went")), None)
    if start is None:
        return ""
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("export written")), len(lines))
    return "\n".join(lines[start:end])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=None, help="the default methods unless given")
    ap.add_argument("--unbuilt", action="store_true", help="remove quanto's built extension from this venv first")
    args = ap.parse_args()
    print(subprocess.run([sys.executable, "-m", "qadvisor", "hardware"], capture_output=True, text=True).stdout
          .splitlines()[0])
    build = quanto_build_dir()
    if args.unbuilt and build is not None:
        shutil.rmtree(build, ignore_errors=True)
    print(f"quanto's extension: {'removed first' if args.unbuilt else 'as this venv has it'} ({build})")
    with tempfile.TemporaryDirectory(prefix="qadvisor-newhome-") as tmp:
        for name in ("first", "after"):
            seconds, stdout = timed_run(Path(tmp), args.methods)
            mark = "✓" if seconds <= TARGETS[name] else "✗"
            print(f"\n{name} run: {seconds:.1f} s {mark} (target ≤ {TARGETS[name]:.0f} s)")
            print(where_the_time_went(stdout))


if __name__ == "__main__":
    main()
