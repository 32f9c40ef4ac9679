"""A client process for presence tests: connects, prints its boot number, waits to be killed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from hallq.bus import Session
from hallq.config import BrokerConfig


async def main(url: str, client_id: str, state_dir: str) -> None:
    async with Session(
        BrokerConfig(url=url),
        hall="liwan",
        role="window",
        client_id=client_id,
        state_dir=Path(state_dir),
    ) as session:
        await session.wait_connected(10)
        print(f"ready boot={session.boot}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
