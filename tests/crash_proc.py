"""A process that SIGKILLs itself in the middle of handling one message (tests/test_bus_acks.py).

``session URL CLIENT STATE_DIR PROTOCOL on|off``: a coordinator-role Session routing the
hall's window commands; the first command it handles is reported on stdout, then the
process dies inside the handler.

``coordinator CONFIG LOG CMD_ID before_log|after_log on|off``: the real coordinator
(``coordinator.service.serve``); the command with id CMD_ID kills it before it reaches the
event log or right after it was appended (durably), before anything is published.

``on|off`` is ``ack_after_handler``. "ready" is printed once the process is subscribed.
Before a kill that is meant to land after the PUBACK would have left (``off``), the process
waits for the broker to acknowledge a QoS 1 publish sent after it: the broker handles a
connection's packets in order, so an automatic PUBACK queued earlier has then been
processed too. With ``on`` nothing is acknowledged before the handler returns.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from hallq.bus import Incoming, Session
from hallq.config import BrokerConfig


def die() -> NoReturn:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


async def barrier(session: Session) -> None:
    client = session._client
    assert client is not None
    await client.publish(f"hallq-test/barrier/{session.client_id}", b"", qos=1)


async def run_session(url: str, client_id: str, state_dir: str, protocol: str, ack: str) -> None:
    broker = BrokerConfig.model_validate({"url": url, "protocol": protocol})
    async with Session(
        broker,
        hall="liwan",
        role="coordinator",
        client_id=client_id,
        state_dir=Path(state_dir),
        ack_after_handler=ack == "on",
    ) as session:

        async def handle(incoming: Incoming) -> None:
            print(f"handling {incoming.payload.id}", flush=True)
            await barrier(session)
            die()

        await session.subscribe(session.topics.every("cmd", "window"), handle)
        await session.wait_connected(10)
        print("ready", flush=True)
        await asyncio.Event().wait()


async def run_coordinator(config: str, log_path: str, cmd_id: str, point: str, ack: str) -> None:
    from coordinator.hallqueue import HallQueue
    from coordinator.service import Coordinator, serve
    from hallq.config import load_config

    execute, submit, commit, commit_off_loop, make_session = (
        Coordinator.execute,
        HallQueue.submit,
        HallQueue.commit,
        HallQueue.commit_off_loop,
        Coordinator.make_session,
    )
    staged: list[str] = []

    async def execute_then_die(
        self: Coordinator, kind: str, role: str, client: str, command: Any, **kw: Any
    ) -> Any:
        if command.id == cmd_id and point == "before_log":
            print(f"handling {cmd_id}", flush=True)
            assert self.session is not None
            await barrier(self.session)
            die()
        return await execute(self, kind, role, client, command, **kw)

    def submit_then_die(
        self: HallQueue, kind: str, role: str, client: str, command: Any, now: float, **kw: Any
    ) -> Any:
        done = submit(self, kind, role, client, command, now, **kw)
        if command.id == cmd_id and point == "after_log":
            staged.append(cmd_id)
            if not kw.get("defer", False):
                commit_then_die(self)
        return done

    def die_once_logged() -> None:
        """Killed once the group holding the command is durable, before any publish."""
        if staged:
            print(f"logged {cmd_id}", flush=True)
            die()

    def commit_then_die(self: HallQueue) -> int:
        kept = commit(self)
        die_once_logged()
        return kept

    async def commit_off_loop_then_die(self: HallQueue) -> int:
        kept = await commit_off_loop(self)
        die_once_logged()
        return kept

    def session_as_asked(self: Coordinator, *, ack_after_handler: bool = True) -> Session:
        return make_session(self, ack_after_handler=ack == "on")

    Coordinator.execute = execute_then_die  # type: ignore[method-assign]
    HallQueue.submit = submit_then_die  # type: ignore[method-assign]
    HallQueue.commit = commit_then_die  # type: ignore[method-assign]
    HallQueue.commit_off_loop = commit_off_loop_then_die  # type: ignore[method-assign]
    Coordinator.make_session = session_as_asked  # type: ignore[method-assign]
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()
        print("ready", flush=True)

    task = asyncio.create_task(announce())
    await serve(load_config(config), log_path=Path(log_path), dispatch="pure", ready=ready)
    task.cancel()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    asyncio.run(run_session(*args) if mode == "session" else run_coordinator(*args))
