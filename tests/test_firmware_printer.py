"""The ticket printer: ESC/POS bytes read back as paper, status mapping, print outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from firmware_bridge.devices import (
    PrinterCondition,
    PrinterStatus,
    Ticket,
    TicketPrinter,
    ticket_bytes,
)
from firmware_bridge.devices.escpos import CHINESE_ON, qr_code, size, status_query
from firmware_bridge.sim import EscPosParser, PrintedTicket, PrinterSimulator

HALL_TZ = ZoneInfo("Asia/Shanghai")
TICKET = Ticket(
    hall="广州市荔湾区办税服务厅",
    service="综合业务",
    number="A023",
    people_ahead=5,
    wait_minutes=8,
    issued_at=datetime(2024, 5, 6, 9, 31, tzinfo=HALL_TZ),  # the edge prints hall time
    status_url="https://q.example.cn/t/liwan/A023?k=7f3a",
)


def parse(data: bytes) -> tuple[PrintedTicket, int, EscPosParser]:
    parser = EscPosParser()
    page, cuts = PrintedTicket(), 0
    for op, value in parser.feed(data):
        if op == "line":
            page.lines.append(value)  # type: ignore[arg-type]
        elif op == "qr":
            page.qr_codes.append(value)  # type: ignore[arg-type]
        elif op == "cut":
            cuts += 1
    return page, cuts, parser


# --- the bytes --------------------------------------------------------------------------------


def test_ticket_bytes_read_back_as_the_ticket() -> None:
    page, cuts, parser = parse(ticket_bytes(TICKET))
    assert cuts == 1
    assert not parser.unknown
    texts = [line.text for line in page.lines if line.text]
    assert texts[:3] == ["广州市荔湾区办税服务厅", "综合业务", "A023"]
    assert "前面还有 5 人" in texts
    assert "预计等待 约 8 分钟" in texts
    assert "取号时间 2024-05-06 09:31" in texts
    assert page.qr_codes == [TICKET.status_url]
    number = next(line for line in page.lines if line.text == "A023")
    assert (number.width, number.height) == (4, 4)
    assert number.align == "center"
    ahead = next(line for line in page.lines if "前面" in line.text)
    assert (ahead.width, ahead.height) == (1, 1)
    assert next(line for line in page.lines if line.text == TICKET.hall).bold


def test_chinese_is_gb18030_after_fs_ampersand() -> None:
    data = ticket_bytes(TICKET)
    assert data.index(CHINESE_ON) < data.index("广州".encode("gb18030"))
    assert "广州".encode() not in data
    page, _, _ = parse(data.replace(CHINESE_ON, b""))  # a printer never put in Chinese mode
    assert "广州市荔湾区办税服务厅" not in page.text


def test_the_wait_prints_as_the_range_the_coordinator_gave() -> None:
    page, _, _ = parse(ticket_bytes(replace(TICKET, wait_text="约 8-12 分钟")))
    assert "预计等待 约 8-12 分钟" in page.text


def test_no_wait_estimate_prints_as_such() -> None:
    page, _, _ = parse(ticket_bytes(replace(TICKET, wait_minutes=None)))
    assert "预计等待 暂无" in page.text


def test_exact_escpos_commands() -> None:
    assert size(4, 4) == b"\x1d\x21\x33"
    assert status_query(2) == b"\x10\x04\x02"
    assert qr_code("AB", module=6) == bytes.fromhex(
        "1d286b040031413200"  # model 2
        "1d286b03003143"
        "06"  # module size 6
        "1d286b03003145"
        "31"  # error correction M
        "1d286b0500315030"
        "4142"  # store "AB"
        "1d286b0300315130"  # print
    )


def test_the_parser_waits_for_split_commands() -> None:
    parser = EscPosParser()
    data = qr_code("https://x.cn/1") + b"\x1d\x56\x42\x00"
    ops = [op for i in range(len(data)) for op in parser.feed(data[i : i + 1])]
    assert ops == [("qr", "https://x.cn/1"), ("cut", None)]


# --- status mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "condition", "ready"),
    [
        ((0x12, 0x12, 0x12), PrinterCondition.OK, True),
        ((0x12, 0x12, 0x1E), PrinterCondition.PAPER_NEAR_END, True),
        ((0x1A, 0x32, 0x7E), PrinterCondition.PAPER_OUT, False),
        ((0x1A, 0x12, 0x72), PrinterCondition.PAPER_OUT, False),  # roll sensor alone
        ((0x1A, 0x16, 0x12), PrinterCondition.COVER_OPEN, False),
        ((0x1A, 0x52, 0x12), PrinterCondition.ERROR, False),
        ((0x1A, 0x12, 0x12), PrinterCondition.OFFLINE, False),
    ],
)
def test_dle_eot_answers_map_to_a_condition(
    answers: tuple[int, int, int], condition: PrinterCondition, ready: bool
) -> None:
    status = PrinterStatus.from_bytes(*answers)
    assert status.condition == condition
    assert status.ready is ready


def test_no_answer_is_unknown_not_ok() -> None:
    status = PrinterStatus.unknown()
    assert status.condition == PrinterCondition.UNKNOWN
    assert not status.ready


# --- printing through a pty -------------------------------------------------------------------


@pytest.fixture
async def printer_sim(tmp_path: Path) -> AsyncIterator[PrinterSimulator]:
    async with PrinterSimulator(tmp_path / "printer") as sim:
        yield sim


@pytest.fixture
async def printer(printer_sim: PrinterSimulator) -> AsyncIterator[TicketPrinter]:
    async with TicketPrinter(str(printer_sim.path), status_timeout=0.3, settle=0) as printer:
        yield printer


async def test_a_ticket_prints_and_is_confirmed(
    printer_sim: PrinterSimulator, printer: TicketPrinter
) -> None:
    result = await printer.print_ticket(TICKET)
    assert result.written
    assert result.done
    assert result.confirmed
    assert result.status.condition == PrinterCondition.OK
    [page] = printer_sim.tickets
    assert "A023" in [line.text for line in page.lines]
    assert "前面还有 5 人" in page.text
    assert page.qr_codes == [TICKET.status_url]
    assert printer_sim.cuts == 1


async def test_paper_running_out_during_the_ticket_fails_it(
    printer_sim: PrinterSimulator, printer: TicketPrinter
) -> None:
    printer_sim.paper_left = 1
    first = await printer.print_ticket(TICKET)
    assert first.done
    assert first.status.condition == PrinterCondition.PAPER_NEAR_END
    second = await printer.print_ticket(TICKET)
    assert second.written
    assert not second.done
    assert second.status.paper_out
    assert len(printer_sim.tickets) == 1
    assert printer_sim.lost == 1
    third = await printer.print_ticket(TICKET)  # known out: nothing is sent
    assert not third.written
    assert not third.done
    assert "paper_out" in third.reason
    assert printer_sim.cuts == 2


async def test_cover_open_prints_nothing(
    printer_sim: PrinterSimulator, printer: TicketPrinter
) -> None:
    printer_sim.cover_open = True
    result = await printer.print_ticket(TICKET)
    assert not result.done
    assert result.status.condition == PrinterCondition.COVER_OPEN
    assert printer_sim.cuts == 0
    assert (await printer.status()).cover_open


async def test_a_mute_printer_is_unknown_and_the_ticket_unconfirmed(
    printer_sim: PrinterSimulator, printer: TicketPrinter
) -> None:
    printer_sim.answers = False
    status = await printer.status()
    assert status.condition == PrinterCondition.UNKNOWN
    assert printer_sim.status_queries == 1  # gave up after the first silence
    result = await printer.print_ticket(TICKET)
    assert result.written
    assert result.done
    assert not result.confirmed
    assert len(printer_sim.tickets) == 1


async def test_an_unplugged_printer_fails_the_ticket_then_recovers(
    printer_sim: PrinterSimulator, printer: TicketPrinter
) -> None:
    assert (await printer.print_ticket(TICKET)).done
    printer_sim.unplug()
    result = await printer.print_ticket(TICKET)
    assert not result.done
    assert not result.written
    printer_sim.replug()
    assert (await printer.print_ticket(TICKET)).confirmed
    assert len(printer_sim.tickets) == 2
