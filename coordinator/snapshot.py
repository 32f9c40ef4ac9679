"""A snapshot of the engine's state made in a forked child, so the event loop never waits
for it.

Pickling a day holds the GIL from start to end (~2.8 µs a ticket: ~30 ms at 10,000 tickets),
and a worker thread cannot help: every command in flight meanwhile waited, once every
``checkpoint_every`` entries, which set the coordinator's p99 under load. ``fork()`` copies
the process's page tables instead (a few ms for the coordinator's heap) and the child,
alone with a frozen copy of the state, pickles it and writes the bytes to a pipe while the
parent serves on; its CPU is the machine's still, on the other core.

The child touches nothing it shares with the parent but that pipe: it closes every other
descriptor (the broker's socket, the log's file), drops the parent's signal plumbing (a
SIGTERM to the whole service must not reach the parent's loop through the wakeup fd it
inherited) and leaves with ``os._exit``, so no ``atexit`` hook, finalizer or buffered
output of the parent runs twice.

``call_forked`` runs other long pure-Python work the same way and brings its result back
pickled: the comfort forecast's counting and simulated days, the counter-time learner's day
replays, the wait estimates' simulated halls. Such a child must call nothing that another
thread of the parent may have been inside at the fork (SQLite above all: its locks would be
inherited taken); numpy, the compiled dispatch core and pure Python are what these run.
Nor may it import a module: one another thread was importing at the fork keeps its lock
taken in the child, which hangs on it. The caller imports first what the work needs
(``coordinator.forecast.waits.load_simulation``). Children run at a lower priority
(``CHILD_NICE``): on a busy machine their core is the broker's and the devices' too.

A child dies with the thread that forked it (Linux's parent-death signal): a coordinator
killed outright (SIGKILL, the OOM killer) leaves no child behind to finish a checkpoint or
a simulated day nobody will read. The threads that fork live as long as the process: the
event loop's (checkpoints) and its default executor's (``asyncio.to_thread``: the forked
calls).
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import select
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("hallq.coordinator")

FAILED = 1  # the child's exit status when ``make`` raised
COLLECT_TIMEOUT_S = 120.0  # a 20,000-ticket day pickles in ~60 ms
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
STOP_POLL_S = 0.25  # how often a wait looks at its stop event
# a child's work waits: on a busy machine the core it runs on is the broker's and the
# devices' too, and a wait-estimate refresh in a burst is ~0.5 s of a core
CHILD_NICE = 10
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# loaded here, in the parent: a child imports nothing (see above)
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
T = TypeVar("T")


class Forked:
    """A child making bytes; :meth:`collect` waits for them."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self.pid = pid
        self._read_fd = read_fd

    def collect(self, timeout_s: float = COLLECT_TIMEOUT_S) -> bytes | None:
        """The child's bytes once it has exited (blocking: call it in a worker thread);
        None, with a warning, when it failed or made nothing within ``timeout_s`` (then it
        is killed: a child stuck for good would hold every later checkpoint back)."""
        made, why = self.wait(timeout_s)
        if made is None:
            log.warning("snapshot: %s; none this time", why)
        return made

    def wait(
        self, timeout_s: float, stop: threading.Event | None = None
    ) -> tuple[bytes | None, str]:
        """The child's bytes, or None and why not. The child is killed once ``timeout_s``
        has passed, or ``stop`` is set (its owner is stopping), without its bytes."""
        chunks = []
        deadline = time.monotonic() + timeout_s
        why = ""
        try:
            with os.fdopen(self._read_fd, "rb", buffering=0) as pipe:
                while True:
                    left = deadline - time.monotonic()
                    if stop is not None and stop.is_set():
                        why = "the child was stopped (its owner is stopping)"
                    elif left <= 0:
                        why = f"the child made nothing in {timeout_s:g} s: killed (signal 9)"
                    elif not select.select([pipe], [], [], min(left, STOP_POLL_S))[0]:
                        continue
                    if why:
                        os.kill(self.pid, signal.SIGKILL)
                        break
                    chunk = pipe.read(1 << 20)
                    if not chunk:
                        break
                    chunks.append(chunk)
        finally:
            _, status = os.waitpid(self.pid, 0)
        if why:
            return None, why
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            how = (
                f"exit status {os.WEXITSTATUS(status)}"
                if os.WIFEXITED(status)
                else f"signal {os.WTERMSIG(status)}"
            )
            return None, f"the child failed ({how})"
        return b"".join(chunks), ""


class ChildFailed(RuntimeError):
    """A forked call gave no result: the child failed, timed out or was stopped."""


def call_forked(
    make: Callable[[], T], *, timeout_s: float, stop: threading.Event | None = None
) -> T:
    """``make()`` run in a forked child and its result pickled back (blocking: call it in
    a worker thread). For long pure-Python work (simulated days) that a worker thread would
    run holding the GIL the event loop needs; the child runs on the other core. ``make``
    must touch no open file, socket or database of the parent (the child closes them).
    Run here, in this thread, where the process cannot fork."""
    child = fork_bytes(lambda: pickle.dumps(make(), protocol=pickle.HIGHEST_PROTOCOL))
    if child is None:
        return make()
    made, why = child.wait(timeout_s, stop)
    if made is None:
        raise ChildFailed(why)
    result: T = pickle.loads(made)
    return result


def fork_bytes(make: Callable[[], bytes]) -> Forked | None:
    """Start ``make()`` in a forked child now and return at once. None when the process
    cannot fork (no memory, no ``fork`` here): the caller makes the bytes itself."""
    if not hasattr(os, "fork"):
        return None
    parent = os.getpid()
    try:
        read_fd, write_fd = os.pipe()
    except OSError as exc:
        log.warning("snapshot: no pipe (%s); made on the loop", exc)
        return None
    # held back across the fork: one arriving before the child dropped the parent's
    # handlers would be written to the wakeup descriptor the two share
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        with warnings.catch_warnings():
            # 3.12+ warns of fork in a threaded process: this child runs no other
            # thread's code and takes no lock but the GIL it is born holding
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        log.warning("snapshot: cannot fork (%s); made on the loop", exc)
        return None
    finally:
        if os.getpid() == parent:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    if pid == 0:  # the child: never returns
        _child(make, read_fd, write_fd, held, parent)
    os.close(write_fd)
    return Forked(pid, read_fd)


def _child(
    make: Callable[[], bytes],
    read_fd: int,
    write_fd: int,
    mask: set[int | signal.Signals],
    parent: int,
) -> None:
    code = FAILED
    try:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # it was gone before the line above took effect
            return
        signal.set_wakeup_fd(-1)
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending one ends it now
        os.nice(CHILD_NICE)
        os.close(read_fd)
        os.closerange(3, write_fd)
        os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
        view = memoryview(make())
        while view:
            view = view[os.write(write_fd, view) :]
        code = 0
    except BaseException:
        pass
    finally:
        os._exit(code)
