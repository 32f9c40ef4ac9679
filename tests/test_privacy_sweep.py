"""Privacy sweep: after a hall day with ID-card check-ins, no ID number is anywhere in clear.

A real Mosquitto, a real coordinator with its web server, the dispenser's agent with its
keypad, ID reader and printer simulated on ptys (the reader speaks the real frames: the
number is on the wire from the card to the Pi, as in the hall). Taxpayers swipe their
cards and press keys, one swipes a misread card, one comes back once too often; windows
call and finish; a supervisor logs in, acts and invites with the number typed into the
note; a taxpayer types their number into the ticket page; a misconfigured device sends a
raw number where the hash belongs. Then every MQTT message the broker carried, every log
line (through the production log handler, at DEBUG), every file under the test's
directory (SQLite, WAL, outboxes, users file, broker), every byte sent to the printer,
and the web pages and API answers are searched for each number in the forms people and
programs write it. The search is shown to work on the one place a number must appear:
the misconfigured device's own publish.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

from firmware_bridge.devices.id_reader import hash_id_number
from firmware_bridge.sim import SimIdReader
from firmware_bridge.sim.escpos_parser import Op
from hallq import messages as m
from hallq.config import parse_config
from hallq.logsetup import setup_logging
from hallq.topics import HallTopics

from .conftest import Mosquitto, until
from .coordinated import FakeClock, device
from .halls import small_hall_text
from .test_edge_agents import agent
from .test_web_helpers import PASSWORD, login, users_toml, web_running

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]
T = HallTopics("test-hall")
KEY = "privacy-sweep-key-0123456789"
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(first17: str) -> str:
    """A resident ID number with its check digit (GB 11643), so the reader accepts it."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return first17 + "10X98765432"[total % 11]


PEOPLE = [
    id_number(p)
    for p in (
        "44010619900101123",
        "11010519851224301",
        "31011519770615002",
        "44030620010930774",
        "51010719690311008",
    )
]
X_PERSON = next(
    id_number(f"4401061988070{i:04d}")
    for i in range(10_000)
    if id_number(f"4401061988070{i:04d}").endswith("X")
)
MISREAD = PEOPLE[1][:17] + ("0" if PEOPLE[1][17] != "0" else "1")  # wrong check digit
ROGUE_NUMBER = id_number("32010219950505661")
NOTE_NUMBER = id_number("11010119900307425")
TYPED_NUMBER = id_number("44010219921212050")
ALL_NUMBERS = [*PEOPLE, X_PERSON, MISREAD, ROGUE_NUMBER, NOTE_NUMBER, TYPED_NUMBER]


def forms(number: str) -> list[bytes]:
    """How a number may show up: as read, lower-case x, grouped 6-8-4, without the check
    digit, as the hex or base64 of its ASCII (a frame dump)."""
    grouped = [sep.join((number[:6], number[6:14], number[14:])) for sep in (" ", "-")]
    raw = number.encode()
    texts = [number, number.lower(), number[:17], *grouped]
    return [t.encode() for t in texts] + [
        raw.hex().encode(),
        raw.hex().upper().encode(),
        base64.b64encode(raw),
    ]


def leaks(blob: bytes) -> list[str]:
    return [f"{n} as {f.decode()!r}" for n in ALL_NUMBERS for f in forms(n) if f in blob]


def hall_text(broker_url: str, state_dir: str) -> str:
    text = small_hall_text(broker_url, state_dir, all_day=False)
    printer = 'serial = { port = "/dev/ttyUSB1", baud = 19200 }\n'
    assert printer in text
    text = text.replace(
        printer,
        printer + '\n[[agents.devices]]\nid = "idcard-1"\n'
        'kind = "id_reader"\nserial = { port = "/dev/ttyUSB2" }\n',
        1,
    )
    return text + "\n[web]\n" + users_toml()


@contextlib.asynccontextmanager
async def captured_logs() -> AsyncIterator[io.StringIO]:
    """What the production handler writes (JSON lines, as under systemd), at DEBUG."""
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    setup_logging("DEBUG", environ={}, stream=out, json_lines=True)
    try:
        yield out
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "hallq-root"]:
            root.removeHandler(handler)
        root.setLevel(level)


class Spy:
    """Every message the broker carries, retained ones included."""

    def __init__(self, port: int) -> None:
        self.client = aiomqtt.Client("127.0.0.1", port, identifier="privacy-spy")
        self.seen: list[tuple[str, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Spy:
        await self.client.__aenter__()
        await self.client.subscribe("#", qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            self.seen.append(
                (
                    str(message.topic),
                    payload if isinstance(payload, bytes) else str(payload).encode(),
                )
            )

    async def wait_for(self, predicate: Any, timeout: float = 15) -> None:  # noqa: ASYNC109  test helper: each test states its bound
        await until(lambda: predicate(self.seen), timeout)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.__aexit__(None, None, None)


async def test_no_id_number_in_clear_anywhere_after_a_day(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = parse_config(
        hall_text(mosquitto.url, str(tmp_path / "state")),
        "privacy.toml",
        environ={"HALLQ_ID_HASH_KEY": KEY},
    )
    clock = FakeClock()
    web_bodies: list[bytes] = []
    raw_printed: list[bytes] = []

    async def fetch(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> int:
        async with http.request(method, url, **kw) as r:
            web_bodies.append(await r.read())
            return r.status

    async with (
        captured_logs() as logs,
        Spy(mosquitto.port) as spy,
        web_running(cfg, tmp_path / "state" / "events.sqlite", clock) as (c, url),
        agent(cfg, "pi-d1", tmp_path, clock) as (devices, printers),
        device(cfg, "window", "pi-w1", tmp_path) as pad,
        aiohttp.ClientSession() as http,
    ):
        printer = printers["printer-1"]
        feed = printer._parser.feed

        def feed_and_keep(data: bytes) -> list[Op]:
            raw_printed.append(bytes(data))
            return feed(data)

        printer._parser.feed = feed_and_keep  # type: ignore[method-assign]
        keys_bus, keys = devices["keys-1"]
        reader_bus, reader = devices["idcard-1"]
        sim_reader = reader_bus.device(reader, SimIdReader)

        async def swipe(number: str) -> None:
            reader_bus.swipe_id(reader, number)
            await reader_bus.wait_for(lambda: sim_reader.unacked == 0, timeout=15)
            polls = iter(range(3))  # two more frames: the card event is through the agent
            await reader_bus.wait_for(lambda: next(polls, None) is None, timeout=15)

        async def take(number: str | None, key: int) -> None:
            cuts = printer.cuts
            if number is not None:
                await swipe(number)
            keys_bus.press(keys, key)
            await printer.wait_for(lambda: printer.cuts > cuts, timeout=15)

        # the morning: everyone with their card, one of them twice, then once too often
        for i, number in enumerate([*PEOPLE, X_PERSON]):
            await take(number, 1 + i % 2)
        await take(PEOPLE[0], 1)
        await take(PEOPLE[0], 2)  # third ticket today: refused, a notice is printed
        assert "每人每天最多取号" in printer.tickets[-1].text
        await swipe(MISREAD)  # a misread card: reported as device health, never quoted
        await spy.wait_for(lambda seen: any(b"card_misread" in p for _, p in seen))
        await take(None, 1)  # and the next one without a card

        hashed = {t.identity for t in c.engine.tickets if t.identity}
        assert hashed == {hash_id_number(n, KEY) for n in [*PEOPLE, X_PERSON]}

        await pad.wait_connected(10)
        for action in ("call", "start", "call", "skip", "call"):
            clock.now += 120
            reply = await pad.request(
                T.cmd("window", "pi-w1"), m.WindowAction(window=1, action=action), timeout=10
            )
            assert reply.ok, reply

        # a misconfigured dispenser sends the number itself where the hash belongs
        rogue = m.IssueRequest(kind="issue", service="tax-filing").model_dump(mode="json")
        rogue["identity"] = ROGUE_NUMBER
        await spy.client.publish(T.req("pi-d9"), json.dumps(rogue), qos=1)
        await spy.wait_for(
            lambda seen: any(t.endswith("/error") and b"identity" in p for t, p in seen)
        )

        # the supervisor's day, and a taxpayer typing their number into the ticket page
        auth = await login(http, url, "supervisor", PASSWORD)
        assert (
            await fetch(
                http,
                "POST",
                f"{url}/api/supervisor/windows/2",
                headers=auth,
                json={"action": "pause"},
            )
            == 200
        )
        assert (
            await fetch(
                http,
                "POST",
                f"{url}/api/supervisor/appointments",
                headers=auth,
                json={
                    "service": "tax-filing",
                    "start": "11:00",
                    "note": "张三 身份证 "
                    + " ".join((NOTE_NUMBER[:6], NOTE_NUMBER[6:14], NOTE_NUMBER[14:])),
                },
            )
            == 201
        )
        assert await fetch(http, "GET", f"{url}/api/tickets/{TYPED_NUMBER}") == 404
        assert (
            await fetch(
                http,
                "POST",
                f"{url}/api/login",
                json={"user": TYPED_NUMBER, "password": TYPED_NUMBER},
            )
            == 401
        )
        pages = [
            "/",
            "/book",
            "/login",
            "/supervisor",
            "/supervisor/hall",
            "/api/hall",
            "/api/supervisor/hall",
            "/api/supervisor/devices",
            "/api/supervisor/alerts",
            "/api/boards",
            "/api/supervisor/appointments",
            "/api/supervisor/audit?limit=500",
            "/api/openapi.json",
            *(f"/api/tickets/{t.number}" for t in c.engine.tickets),
        ]
        for page in pages:
            assert await fetch(http, "GET", url + page, headers=auth) == 200, page
        for script in ("hall.js", "supervisor.js", "live.js", "ticket.js", "book.js"):
            await fetch(http, "GET", f"{url}/static/{script}")

        # the search finds a number where one must be: the rogue's own message
        own = [p for t, p in spy.seen if t == T.req("pi-d9")]
        assert own
        assert {hit.split()[0] for hit in leaks(own[0])} == {ROGUE_NUMBER}
        found: dict[str, list[str]] = {}
        for topic, payload in spy.seen:
            if topic != T.req("pi-d9") and (hit := leaks(topic.encode() + b" " + payload)):
                found[f"MQTT {topic}"] = hit
        for i, body in enumerate(web_bodies):
            if hit := leaks(body):
                found[f"web answer {i}: {body[:80]!r}"] = hit
        printed = (
            b"".join(raw_printed)
            + "\n".join(t.text + " ".join(t.qr_codes) for t in printer.tickets).encode()
        )
        assert len(printer.tickets) >= 8
        assert raw_printed
        if hit := leaks(printed):
            found["printed tickets"] = hit
        log_text = logs.getvalue()
        assert "card_misread" in log_text or "check digit" in log_text
        if hit := leaks(log_text.encode()):
            found["log"] = hit

    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".sqlite" for p in files)
    for path in files:
        if hit := leaks(path.read_bytes()):
            found[f"file {path.relative_to(tmp_path)}"] = hit
    assert found == {}
