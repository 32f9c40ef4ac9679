"""Agents end to end: simulated devices on ptys, a real Mosquitto, a real coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.agent import run_agent
from edge.hall_devices import serial_devices
from firmware_bridge.sim import BusSimulator, PrinterSimulator, SimCallPad
from firmware_bridge.sim.hall import simulate_devices
from hallq.aio import cancel_and_wait
from hallq.config import HallConfig, parse_config
from hallq.errors import ConfigError
from hallq.messages import IssueRequest, TicketState, WindowAction

from .conftest import Inbox, Mosquitto, until
from .coordinated import FakeClock, device, running
from .halls import small_hall, small_hall_text

pytestmark = pytest.mark.broker


@contextlib.asynccontextmanager
async def agent(
    cfg: HallConfig, agent_id: str, tmp_path: Path, clock: Any
) -> AsyncIterator[tuple[dict[str, tuple[BusSimulator, int]], dict[str, PrinterSimulator]]]:
    """The agent's devices simulated on ptys, and the agent process's main coroutine."""
    sim_dir = tmp_path / f"sim-{agent_id}"
    sims = simulate_devices(serial_devices(cfg.agent(agent_id).devices), sim_dir)
    async with sims:
        ready = asyncio.Event()
        task = asyncio.create_task(
            run_agent(cfg, agent_id, sim_dir=sim_dir, simulate_all=True, clock=clock, ready=ready)
        )
        try:
            done, _ = await asyncio.wait(
                {task, asyncio.ensure_future(ready.wait())},
                timeout=15,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if task in done:
                task.result()
            assert ready.is_set(), f"agent {agent_id} did not come up"
            yield sims.devices, sims.printers
        finally:
            await cancel_and_wait(task)


async def test_a_key_press_prints_the_ticket_a_pad_calls_it_and_a_rating_is_logged(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        agent(cfg, "pi-d1", tmp_path, clock) as (d_devices, printers),
        agent(cfg, "pi-w1", tmp_path, clock) as (w_devices, _),
    ):
        keypad_bus, keypad = d_devices["keys-1"]
        printer = printers["printer-1"]
        keypad_bus.press(keypad, 1)  # key 1: tax-filing
        await printer.wait_for(lambda: len(printer.tickets) == 1, timeout=15)
        printed = printer.tickets[0]
        assert "A001" in printed.text
        assert "前面还有 0 人" in printed.text
        assert "预计等待 1 分钟内" in printed.text  # the reply's range, as printed
        assert printed.qr_codes == [cfg.hall.ticket_url("A001")]

        pad_bus, pad = w_devices["pad-1"]
        sim_pad = pad_bus.device(pad, SimCallPad)
        await pad_bus.wait_for(lambda: sim_pad.display == "空闲 请叫号", timeout=15)
        clock.now += 90
        pad_bus.press(pad, "CALL")
        await pad_bus.wait_for(lambda: sim_pad.display == "A001", timeout=15)
        assert coordinator.engine.by_number["A001"].state is TicketState.CALLED

        pad_bus.press(pad, "FINISH")  # at once: its holder has not even come yet
        await pad_bus.wait_for(lambda: sim_pad.display == "A001 刚叫号 10秒后再操作", timeout=15)
        assert coordinator.engine.by_number["A001"].state is TicketState.CALLED
        clock.now += 60  # the taxpayer came and was served
        pad_bus.press(pad, "FINISH")
        await pad_bus.wait_for(lambda: sim_pad.display == "空闲 请叫号", timeout=15)
        rate_bus, rate = w_devices["rate-1"]
        rate_bus.rate(rate, 4)

        def rated() -> int:  # the log is the truth: the engine changes before its group commits
            row = coordinator.eventlog._reader.execute(
                'SELECT count(*) FROM entries WHERE payload LIKE \'%"action":"rate"%\''
            ).fetchone()
            return int(row[0])

        await until(lambda: rated() > 0, timeout=15)
        assert rated() == 1
        assert coordinator.engine.by_number["A001"].rating == 4


async def test_an_offline_dispenser_issues_from_its_lease_and_replays_on_return(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        agent(cfg, "pi-d1", tmp_path, clock) as (devices, printers),
    ):
        keypad_bus, keypad = devices["keys-1"]
        printer = printers["printer-1"]
        await until(lambda: ("pi-d1", "invoice") in coordinator.engine.leases, timeout=15)
        keypad_bus.press(keypad, 2)  # invoice, online
        await printer.wait_for(lambda: len(printer.tickets) == 1, timeout=15)

        mosquitto.stop()
        for _ in range(3):
            keypad_bus.press(keypad, 2)
        await printer.wait_for(lambda: len(printer.tickets) == 4, timeout=30)
        offline_numbers = ["B950", "B951", "B952"]
        for ticket, number in zip(printer.tickets, ["B001", *offline_numbers], strict=True):
            assert number in ticket.text
            assert ticket.qr_codes == [cfg.hall.ticket_url(number)]

        mosquitto.start()
        await until(
            lambda: all(n in coordinator.engine.by_number for n in offline_numbers), timeout=30
        )
        tickets = coordinator.engine.tickets
        assert [t.number for t in tickets] == ["B001", *offline_numbers]
        assert all(t.offline for t in tickets[1:])
        assert not tickets[0].offline
        assert len({t.number for t in tickets}) == len(tickets)


GUIDE_KEYPAD = """
[[agents.devices]]
id = "guide-keys"
kind = "keypad"
services = ["tax-filing"]
priority = "assisted"
serial = { port = "/dev/ttyUSB0", address = 2 }
"""


def guide_hall(url: str, state: str, priorities: str = '["assisted"]') -> HallConfig:
    """The small hall whose dispenser pi-d1 also has the 导税 guide's keypad."""
    text = small_hall_text(url, state)
    head = 'id = "pi-d1"\nrole = "dispenser"\n'
    text = text.replace(head, f"{head}priorities = {priorities}\n", 1)
    keypad = re.search(r'id = "keys-1"\n(.+\n)+?serial = .*\n', text)
    assert keypad is not None
    text = text.replace(keypad.group(), keypad.group() + GUIDE_KEYPAD, 1)
    return parse_config(text, "guide-hall.toml")


async def test_the_guide_s_keypad_issues_assisted_tickets_online_and_offline(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The 导税 guide decides who is assisted: their keypad's tickets are assisted ones,
    printed 【导税】 and called ahead of normal ones, printed offline the same way and
    replayed as such. A keypad may issue them only where its agent's priorities allow."""
    with pytest.raises(
        ConfigError, match=r'devices\[1\]\.priority .*device guide-keys.*add "assisted" to its'
    ):
        guide_hall(mosquitto.url, str(tmp_path / "state"), priorities="[]")
    cfg = guide_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        agent(cfg, "pi-d1", tmp_path, clock) as (devices, printers),
    ):
        keypad_bus, keypad = devices["keys-1"]
        _, guide = devices["guide-keys"]
        printer = printers["printer-1"]
        await until(lambda: ("pi-d1", "tax-filing") in coordinator.engine.leases, timeout=15)
        keypad_bus.press(keypad, 1)
        await printer.wait_for(lambda: len(printer.tickets) == 1, timeout=15)
        keypad_bus.press(guide, 1)
        await printer.wait_for(lambda: len(printer.tickets) == 2, timeout=15)
        assert "【导税】" not in printer.tickets[0].text
        assert "A002" in printer.tickets[1].text
        assert "【导税】" in printer.tickets[1].text
        by_number = coordinator.engine.by_number
        assert (by_number["A001"].priority, by_number["A002"].priority) == ("normal", "assisted")
        done = await coordinator.execute(
            "window", "window", "pi-w1", WindowAction(window=1, action="call"), reply=False
        )
        assert done.record["ok"]
        assert by_number["A002"].state is TicketState.CALLED  # ahead of A001
        keypad_bus.press(keypad, 3)  # the green-channel service: its name says so, no badge
        await printer.wait_for(lambda: len(printer.tickets) == 3, timeout=15)
        assert "G001" in printer.tickets[2].text
        assert "【" not in printer.tickets[2].text

        mosquitto.stop()
        keypad_bus.press(guide, 1)
        await printer.wait_for(lambda: len(printer.tickets) == 4, timeout=30)
        offline = printer.tickets[3].text
        assert "【导税】" in offline
        found = re.search(r"A9\d\d", offline)
        assert found is not None, offline
        mosquitto.start()
        await until(lambda: found.group() in by_number, timeout=30)
        assert by_number[found.group()].priority == "assisted"
        assert by_number[found.group()].offline


async def test_a_pad_never_queues_a_call_while_the_link_is_down(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        agent(cfg, "pi-w1", tmp_path, clock) as (devices, _),
    ):
        pad_bus, pad = devices["pad-1"]
        sim_pad = pad_bus.device(pad, SimCallPad)
        # the day open and its state on the pad before the broker goes: nothing changes
        # while it is away, so the state it keeps comes back as the one the agent has seen
        # (had the day opened during the outage, its new state would redraw the pad anyway)
        await until(lambda: coordinator.engine.day is not None, timeout=15)
        await pad_bus.wait_for(lambda: sim_pad.display == "空闲 请叫号", timeout=15)
        mosquitto.stop()
        pad_bus.press(pad, "CALL")
        await pad_bus.wait_for(lambda: sim_pad.display == "网络断开 请稍候", timeout=15)
        mosquitto.start()
        await pad_bus.wait_for(lambda: sim_pad.display == "空闲 请叫号", timeout=30)
        calls = coordinator.eventlog._db.execute(
            "SELECT count(*) FROM entries WHERE kind = 'window'"
        ).fetchone()[0]
        assert calls == 0, "a CALL pressed while offline must not arrive later"


@contextlib.asynccontextmanager
async def pad_showing_a001(
    mosquitto: Mosquitto, tmp_path: Path
) -> AsyncIterator[tuple[BusSimulator, int, SimCallPad]]:
    """pi-w1's agent on simulated devices, window 1's pad showing A001 after its CALL: the
    window's last change, so no state follows it (a second ticket waits behind)."""
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    async with (
        running(cfg, tmp_path / "log.sqlite", clock),
        agent(cfg, "pi-w1", tmp_path, clock) as (devices, _),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
    ):
        pad_bus, pad = devices["pad-1"]
        sim_pad = pad_bus.device(pad, SimCallPad)
        await dispenser.wait_connected(10)
        for _ in range(2):
            issue = IssueRequest(kind="issue", service="tax-filing")
            assert (await dispenser.request(dispenser.topics.req("pi-d1"), issue, timeout=10)).ok
        pad_bus.press(pad, "CALL")
        await pad_bus.wait_for(lambda: sim_pad.display == "A001", timeout=30)
        yield pad_bus, pad, sim_pad


async def test_a_refusal_on_the_pad_gives_way_to_its_window_s_state(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a field engineer: 无响应 请重试 stayed on a pad for minutes after the
    coordinator was back (nothing changed, so no state came to replace it). A notice now
    stays NOTICE_S, then the window's state shows again."""
    import edge.window

    monkeypatch.setattr(edge.window, "NOTICE_S", 0.3)
    async with pad_showing_a001(mosquitto, tmp_path) as (pad_bus, pad, sim_pad):
        pad_bus.press(pad, "CALL")  # too soon after the last: refused, nothing changes
        await pad_bus.wait_for(
            lambda: any(text.startswith("A001 刚叫号") for text, _ in sim_pad.displays), timeout=15
        )
        await pad_bus.wait_for(lambda: sim_pad.display == "A001", timeout=15)


async def test_a_power_cycled_pad_shows_its_window_again_at_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Found by a field engineer power-cycling the pads' cabinet: the pads came back blank
    and stayed so until their window next changed (a state comes only on a change)."""
    async with pad_showing_a001(mosquitto, tmp_path) as (pad_bus, _pad, sim_pad):
        sim_pad.reboot()
        assert sim_pad.display is None  # a power-cycled pad is dark
        await pad_bus.wait_for(lambda: sim_pad.display == "A001", timeout=15)


async def test_an_unplugged_pad_line_recovers_without_a_restart_and_health_says_so(
    mosquitto: Mosquitto, tmp_path: Path, inbox: type[Inbox]
) -> None:
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    health = inbox()

    def line(ps: list[Any], ok: bool) -> bool:
        return any(c.name == "line-ttyusb0" and c.ok is ok for p in ps[-1:] for c in p.components)

    async with (
        running(cfg, tmp_path / "log.sqlite", clock) as coordinator,
        agent(cfg, "pi-w1", tmp_path, clock) as (devices, _),
    ):
        assert coordinator.session is not None
        await coordinator.session.subscribe(
            coordinator.session.topics.health("window", "pi-w1"), health
        )
        pad_bus, pad = devices["pad-1"]
        sim_pad = pad_bus.device(pad, SimCallPad)
        await pad_bus.wait_for(lambda: sim_pad.display is not None, timeout=15)
        await health.wait_for(lambda ps: line(ps, True), timeout=15)
        pad_bus.unplug()
        await health.wait_for(lambda ps: line(ps, False), timeout=15)
        pad_bus.replug()
        await health.wait_for(lambda ps: line(ps, True), timeout=30)
        async with device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser:
            await dispenser.wait_connected(10)
            reply = await dispenser.request(
                dispenser.topics.req("pi-d1"),
                IssueRequest(kind="issue", service="tax-filing"),
                timeout=10,
            )
        assert reply.ok
        pad_bus.press(pad, "CALL")
        await pad_bus.wait_for(lambda: sim_pad.display == "A001", timeout=30)


async def test_a_board_agent_draws_the_call_and_announces_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = small_hall(mosquitto.url, str(tmp_path / "state"))
    clock = FakeClock()
    out = tmp_path / "state" / "boards" / "pi-b1"
    async with (
        running(cfg, tmp_path / "log.sqlite", clock),
        agent(cfg, "pi-b1", tmp_path, clock),
        device(cfg, "dispenser", "pi-d1", tmp_path) as dispenser,
        device(cfg, "window", "pi-w1", tmp_path) as pad,
    ):
        await dispenser.wait_connected(10)
        await pad.wait_connected(10)
        await dispenser.request(
            dispenser.topics.req("pi-d1"),
            IssueRequest(kind="issue", service="tax-filing"),
            timeout=10,
        )
        reply = await pad.request(
            pad.topics.cmd("window", "pi-w1"), WindowAction(window=1, action="call"), timeout=10
        )
        assert reply.ticket == "A001"
        await until(
            lambda: (out / "voice-1" / "0001.wav").exists() and (out / "main-board.png").exists(),
            timeout=30,
        )
    assert (out / "voice-1" / "0001.wav").stat().st_size > 1000


def test_a_paused_window_pad_still_shows_the_ticket_to_serve() -> None:
    """Found by a supervisor: a CALL that crossed a pause left E091 called at a paused
    window whose pad said only 暂停服务, so nobody served E091 until the window resumed."""
    from edge.window import display_text
    from hallq.messages import WindowState, WindowStatus

    def state(ticket: str | None) -> WindowState:
        return WindowState(
            rev=1, window=5, zone="hall-1", status=WindowStatus.PAUSED, ticket=ticket
        )

    assert display_text(state("E091")) == "E091 办完后暂停"
    assert display_text(state(None)) == "暂停服务"
    closing = state("E091").model_copy(update={"closing": True})  # closed at the shift's end
    assert display_text(closing) == "E091 办完后关窗"
