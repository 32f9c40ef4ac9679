from __future__ import annotations

from pathlib import Path

from edge.leases import LeaseBook


def test_numbers_come_from_the_blocks_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    book = LeaseBook(tmp_path / "leases.sqlite")
    book.add_block("2026-11-30", "invoice", 10, 12)
    book.add_block("2026-11-30", "invoice", 40, 41)
    assert book.remaining("2026-11-30", "invoice") == 5
    assert [book.take("2026-11-30", "invoice") for _ in range(2)] == [10, 11]
    book.close()
    again = LeaseBook(tmp_path / "leases.sqlite")
    assert [again.take("2026-11-30", "invoice") for _ in range(4)] == [12, 40, 41, None]
    assert again.remaining("2026-11-30", "invoice") == 0
    assert again.take("2026-11-30", "tax-filing") is None


def test_blocks_end_with_their_day(tmp_path: Path) -> None:
    book = LeaseBook(tmp_path / "leases.sqlite")
    book.add_block("2026-11-30", "invoice", 1, 5)
    book.forget_before("2026-12-01")
    assert book.take("2026-11-30", "invoice") is None
