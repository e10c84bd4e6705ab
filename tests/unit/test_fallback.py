"""A trial process that dies of any fatal signal is read as a crash a safe configuration may cure, whatever the signal
(the same AMX fault is SIGILL on one machine and SIGSEGV on the next). The whole fallback runs end to end for SIGILL and
SIGSEGV in tests/integration/test_faults.py; here every signal, in a fresh process and in a forked one (a warm
process's trials are forked, and it reads their wait status)."""

import os
import signal
import subprocess
import sys

import pytest

from qadvisor.quantizers import fallback

FATAL = [signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE]  # what a broken kernel dies of


@pytest.mark.parametrize("sig", FATAL, ids=lambda s: s.name)
def test_a_fresh_process_dying_of_any_fatal_signal_names_it(sig):
    done = subprocess.run([sys.executable, "-c", f"import os, signal; os.kill(os.getpid(), signal.{sig.name})"])
    assert fallback.fatal(done.returncode) == sig.name


@pytest.mark.parametrize("sig", FATAL, ids=lambda s: s.name)
def test_a_forked_process_dying_of_any_fatal_signal_names_it(sig):
    pid = os.fork()
    if pid == 0:  # the child: as a trial forked by the warm process
        signal.signal(sig, signal.SIG_DFL)  # pytest's faulthandler would dump first; the death is the same
        os.kill(os.getpid(), sig)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert fallback.fatal(os.waitstatus_to_exitcode(status)) == sig.name


@pytest.mark.parametrize("code", [0, 1, -signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT, None])
def test_an_exit_kill_or_stop_is_no_fault_a_safe_configuration_cures(code):
    assert fallback.fatal(code) is None
