"""amqtt (MQTT 3.1.1 only) in its own process, so its leftovers never touch the test process."""

from __future__ import annotations

import asyncio
import sys

from amqtt.broker import Broker


async def main(port: int) -> None:
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
