"""The contract on a broker that speaks only MQTT 3.1.1 (amqtt, the demo's embedded broker)."""

from __future__ import annotations

from pathlib import Path

import aiomqtt

from hallq import messages as m
from hallq.bus import Session
from hallq.config import BrokerConfig
from hallq.topics import HallTopics

from .conftest import Inbox

T = HallTopics("liwan")


async def test_auto_falls_back_to_311_and_request_reply_works(
    amqtt_url: str, tmp_path: Path
) -> None:
    def session(role: str, client: str) -> Session:
        return Session(
            BrokerConfig(url=amqtt_url),
            hall="liwan",
            role=role,
            client_id=client,
            state_dir=tmp_path / client,
            op_timeout=1.0,
            backoff_initial=0.05,
        )

    requests = Inbox()
    async with session("coordinator", "coord") as coord, session("dispenser", "d1") as disp:

        async def answer(incoming: object) -> None:
            await requests(incoming)
            req = incoming.payload  # type: ignore[attr-defined]
            await coord.publish(
                T.reply("dispenser", "d1"),
                m.IssueReply(
                    kind="issue",
                    corr=req.id,
                    ok=False,
                    error=m.Rejection(code="closed", message="已停止取号"),
                ),
            )

        await coord.subscribe(T.req("d1").replace("d1", "+"), answer)
        await coord.wait_connected(15)
        await disp.wait_connected(15)
        reply = await disp.request(
            T.req("d1"), m.IssueRequest(kind="issue", service="a"), timeout=10
        )
    assert reply.error.code == "closed"
    assert coord._protocol is disp._protocol is aiomqtt.ProtocolVersion.V311
