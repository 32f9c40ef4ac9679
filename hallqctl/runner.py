"""Running a service's coroutine with a shutdown that always ends.

``asyncio.run`` waits without limit for every task to finish its cancellation and for every
worker thread to return: one task that swallows a cancellation (Python 3.11's ``wait_for``
can) or one blocked thread and Ctrl-C never returns. Here each stage of the shutdown gets
``stop_s`` seconds; whatever is still running then is named in one line on stderr and the
process exits non-zero at once, so systemd and the person at the terminal both see what hung.

Worker threads are waited for here, not by ``loop.shutdown_default_executor()``: on Python
3.11 a timeout around that coroutine cannot end it (its ``finally`` joins the thread that
waits for the workers, blocking the loop), so a worker reading a long log held the stop
for minutes. A thread cannot be cancelled: workers that may run long check a stop flag
(``Coordinator.stopping``); what still runs after ``stop_s`` is abandoned by ``os._exit``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["STOP_S", "describe_task", "run_bounded"]

STOP_S = 5.0
STUCK_EXIT = 70  # EX_SOFTWARE: the shutdown itself failed

log = logging.getLogger("hallq.runner")


def describe_task(task: asyncio.Task[Any]) -> str:
    """Where a task is stuck: its coroutine and the line it waits on."""
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or task.get_name()
    stack = task.get_stack(limit=1)
    if stack:
        code = stack[-1].f_code
        return f"{name} ({os.path.basename(code.co_filename)}:{stack[-1].f_lineno})"
    return str(name)


def _give_up(what: str, items: list[str]) -> None:
    print(
        f"hallq: did not stop within {STOP_S:g} s: {what}: {', '.join(items)}",
        file=sys.stderr,
        flush=True,
    )
    os._exit(STUCK_EXIT)


async def _cancel_within(
    tasks: set[asyncio.Task[Any]], limit: float, every: float = 0.5
) -> set[asyncio.Task[Any]]:
    """Cancel (again each ``every`` seconds, since one cancel can be lost) until all are
    done or ``limit`` passes; the tasks still running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    pending = {t for t in tasks if not t.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(every, deadline - loop.time()))
    return pending


def run_bounded(
    main: Callable[[], Coroutine[Any, Any, object]], *, stop_s: float = STOP_S, signals: bool = True
) -> None:
    """Run ``main()`` until it returns or SIGTERM/SIGINT/SIGHUP arrives, then shut down within
    ``stop_s`` per stage. Exceptions from ``main`` propagate once the loop is closed."""
    loop = asyncio.new_event_loop()
    workers = ThreadPoolExecutor(thread_name_prefix="hallq-worker")
    loop.set_default_executor(workers)  # ours, so its shutdown can be bounded

    async def runner() -> None:
        task = asyncio.ensure_future(main())
        stop = asyncio.Event()
        received: list[str] = []

        def on_signal(sig: signal.Signals) -> None:
            # a field engineer reading the journal sees why it stopped and that it did
            if not received:
                received.append(sig.name)
                log.info("stopping: %s received (pid %d)", sig.name, os.getpid())
            stop.set()

        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # (a closed terminal)
                loop.add_signal_handler(sig, on_signal, sig)
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():  # cancelled once: a second cancel would cut its own orderly
            # stop short (which may take a stage per part: 3 x stop_s in all)
            began = loop.time()
            if await _cancel_within({task}, 3 * stop_s, every=3 * stop_s):
                _give_up("the service", [describe_task(task)])
            log.info(
                "stopped on %s in %.1f s",
                received[0] if received else "request",
                loop.time() - began,
            )
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    try:
        loop.run_until_complete(runner())
    finally:
        try:
            leftovers = {t for t in asyncio.all_tasks(loop) if not t.done()}
            if leftovers:
                stuck = loop.run_until_complete(_cancel_within(leftovers, stop_s))
                if stuck:
                    _give_up("tasks", sorted(describe_task(t) for t in stuck))
            loop.run_until_complete(_bounded(loop.shutdown_asyncgens(), stop_s, "async generators"))
            _join_workers(workers, stop_s)
        finally:
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            loop.close()


def _join_workers(workers: ThreadPoolExecutor, limit: float) -> None:
    """Wait up to ``limit`` for the worker threads' jobs (queued ones are dropped)."""
    waiter = threading.Thread(
        target=workers.shutdown, kwargs={"wait": True, "cancel_futures": True}, daemon=True
    )
    waiter.start()
    waiter.join(limit)
    if waiter.is_alive():
        busy = sorted(t.name for t in threading.enumerate() if t.name.startswith("hallq-worker"))
        _give_up("worker threads", busy or ["still running"])


async def _bounded(job: Coroutine[Any, Any, None], limit: float, what: str) -> None:
    try:
        async with asyncio.timeout(limit):
            await job
    except TimeoutError:
        _give_up(what, ["still running"])
