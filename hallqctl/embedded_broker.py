"""An MQTT 3.1.1 broker (amqtt) for machines without Mosquitto: the demo's fallback.

It runs in its own process (``python -m hallqctl.embedded_broker PORT``) so that its
connection handling, which leaves transports behind on shutdown, never touches the
process that uses it; the caller reads ``ready`` on stdout before connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator


async def serve(port: int) -> None:
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


@contextlib.contextmanager
def embedded_broker(port: int) -> Iterator[str]:
    """Start the broker process on 127.0.0.1:``port``; yields its URL; stops it after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hallqctl.embedded_broker", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        process_group=0,  # a terminal's Ctrl-C is for the demo, which stops it last
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the embedded MQTT broker did not start (exit {proc.poll()})")
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
