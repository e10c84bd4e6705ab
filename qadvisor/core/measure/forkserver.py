"""Warm trial processes: one process imports torch and transformers once, then forks a fresh child per job.

Every trial still runs in a process of its own (its own memory peak, a crash stays contained, the child leads its own
process group so a stop reaches all of it), but it does not pay the interpreter start and the imports (seconds each on a
slow CPU, most of a cached re-run). The forking process never runs a torch operation, so no thread pool exists at
fork time. `python -m qadvisor.core.measure.forkserver` with the socket's descriptor in QADVISOR_FORKSERVER_FD.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys

from qadvisor.core.measure import worker

FD_ENV = "QADVISOR_FORKSERVER_FD"


class ForkServer:
    """The runner's side: start the warm process, ask it for children, hear how they ended."""

    def __init__(self, env: dict[str, str]):
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen([sys.executable, "-m", "qadvisor.core.measure.forkserver"], pass_fds=(theirs.fileno(),),
                                     env={**env, FD_ENV: str(theirs.fileno())}, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.sock, self.buffer, self.broken = ours, b"", False
        self.ready = False  # it has answered once: its imports are done

    def spawn(self, job_file: str, cwd: str, event_fd: int, log_fd: int) -> "ForkedChild":
        """A child running `worker.main` on `job_file`; raises OSError when the warm process is gone or did not
        answer, and is then closed for good (a child it forks late is stopped with it: no trial runs twice)."""
        if self.broken:
            raise OSError("the warm process is closed")
        try:
            self.sock.settimeout(120)  # the first request waits for the imports
            socket.send_fds(self.sock, [json.dumps({"job": job_file, "cwd": cwd}).encode()], [event_fd, log_fd])
            tag, value = self._line()
            if tag != "pid":
                raise OSError(f"the warm process answered {tag} {value}")
            self.ready = True
        except OSError:
            self.broken = True
            self.close()
            raise
        return ForkedChild(self, value)

    def _line(self, timeout: float | None = 120) -> tuple[str, int]:
        self.sock.settimeout(timeout)
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(256)
            if not chunk:
                raise OSError("the warm process ended")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        tag, value = line.decode().split()
        return tag, int(value)

    def close(self) -> None:
        self.broken = True
        self.sock.close()  # the warm process stops a child still running, then ends
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ForkedChild:
    """What the runner needs of a child it did not start itself: its pid (= its process group) and its exit."""

    def __init__(self, forkserver: ForkServer, pid: int):
        self.forkserver, self.pid, self.returncode = forkserver, pid, None
        self.orphaned = False  # the warm process ended before saying how the child ended (the runner stops it)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                _, code = self.forkserver._line(timeout)
            except socket.timeout:
                raise subprocess.TimeoutExpired("trial", timeout) from None
            except OSError:
                code, self.orphaned = -signal.SIGKILL, True
            self.returncode = code
        return self.returncode


def serve(sock: socket.socket) -> None:
    worker.warm_imports()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 65536, 2)
        except OSError:
            return
        if not message:
            return  # the runner closed its end
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            sock.close()
            os._exit(_child(request, *fds))
        _own_group(pid)  # before the runner hears the pid: its killpg must reach the child from the first moment
        for fd in fds:
            os.close(fd)
        sock.sendall(f"pid {pid}\n".encode())
        code = _wait_unless_orphaned(sock, pid)
        if code is None:
            return
        sock.sendall(f"exit {code}\n".encode())


def _wait_unless_orphaned(sock: socket.socket, pid: int) -> int | None:
    """The child's exit code; or, when the runner's end of the socket closes first (a Ctrl-C between the fork and
    the runner hearing its pid, or the runner killed), stop the child's whole session and return None: no trial
    process outlives its run."""
    try:
        waitable = [os.pidfd_open(pid)]  # readable when the child exits: no polling while it is being timed
    except (AttributeError, OSError):
        waitable = []
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            ready, _, _ = select.select([sock, *waitable], [], [], None if waitable else 0.05)
            if sock in ready and not sock.recv(1, socket.MSG_PEEK):
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
    finally:
        for fd in waitable:
            os.close(fd)


def _own_group(pid: int) -> None:
    """The child leads a process group of its own (in the warm process's session, which has no terminal): a stop
    reaches everything it starts. Called on both sides of the fork, whichever runs first."""
    try:
        os.setpgid(pid, 0)
    except OSError:
        pass  # the other side did it already


def _child(request: dict, event_fd: int, log_fd: int) -> int:
    """In the forked child: a process group of its own, output to the trial's log, then the worker as a fresh process would."""
    _own_group(0)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.chdir(request["cwd"])
    os.environ["QADVISOR_EVENT_FD"] = str(event_fd)
    try:
        return worker.main(["worker", request["job"]])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner ends it; a Ctrl-C reaches the runner alone
    serve(socket.socket(fileno=int(os.environ[FD_ENV])))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # nothing left to write: tearing down torch and transformers took the runner's close 0.3 s a run
