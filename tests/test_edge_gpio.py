"""GPIO buttons on gpiozero's mock pins: our debounce turns a bouncing contact into one press."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from edge.gpio import Buttons, GpioError, Indicators, make_pin_factory, split_pins

from .conftest import until


@pytest.fixture
def factory() -> object:
    return make_pin_factory("mock")


class Presses:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.changed = asyncio.Event()

    def __call__(self, name: str) -> None:
        self.names.append(name)
        self.changed.set()

    async def wait(self, count: int, timeout: float = 5.0) -> list[str]:  # noqa: ASYNC109  test helper: each test states its bound
        async with asyncio.timeout(timeout):
            while len(self.names) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.names


@pytest.fixture
async def buttons(factory: object) -> AsyncIterator[tuple[Buttons, Presses, object]]:
    presses = Presses()
    b = Buttons(
        {"call": 17, "finish": 27},
        factory,
        presses,
        loop=asyncio.get_running_loop(),
        debounce_s=0.02,
    )
    yield b, presses, factory
    b.close()


async def quiet(b: Buttons) -> None:
    """Wait until no debounce timer is pending (the pins have settled)."""
    await asyncio.sleep(0)  # run the edge callbacks the mock pins queued from this thread
    await until(lambda: all(p.timer is None for p in b._pins.values()), timeout=5)


async def test_a_bouncing_contact_gives_one_press(buttons: tuple[Buttons, Presses, object]) -> None:
    b, presses, factory = buttons
    pin = factory.pin(17)  # type: ignore[attr-defined]
    for _ in range(5):  # the contact chatters as it closes
        pin.drive_low()
        pin.drive_high()
    pin.drive_low()
    assert await presses.wait(1) == ["call"]
    for _ in range(3):  # and again as it opens
        pin.drive_high()
        pin.drive_low()
    pin.drive_high()
    await quiet(b)
    assert presses.names == ["call"]
    assert b.bounces >= 5


async def test_two_real_presses_count_twice_and_a_held_key_once(
    buttons: tuple[Buttons, Presses, object],
) -> None:
    b, presses, factory = buttons
    call, finish = factory.pin(17), factory.pin(27)  # type: ignore[attr-defined]
    call.drive_low()
    await presses.wait(1)
    call.drive_high()
    await quiet(b)
    call.drive_low()
    finish.drive_low()
    assert sorted(await presses.wait(3)) == ["call", "call", "finish"]
    await quiet(b)
    assert b.presses == 3


def test_pin_factories_are_chosen_by_name_with_a_fix_when_missing() -> None:
    with pytest.raises(GpioError, match="unknown pin factory 'pi6'"):
        make_pin_factory("pi6")
    with pytest.raises(GpioError, match=r"hallq\[agent,pi\]|cannot start"):
        make_pin_factory("lgpio")
    with pytest.raises(GpioError, match=r"pip install RPi\.GPIO, or use the default lgpio|cannot"):
        make_pin_factory("rpigpio")  # no longer installed by any extra


def test_the_env_var_picks_the_default_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALLQ_PIN_FACTORY", "mock")
    assert type(make_pin_factory()).__name__ == "MockFactory"


def test_indicators_drive_their_pins(factory: object) -> None:
    keys, lamps = split_pins({"call": 17, "led_link": 5, "led_paper": 6})
    assert keys == {"call": 17}
    assert lamps == {"link": 5, "paper": 6}
    leds = Indicators(lamps, factory)
    try:
        leds.set("link", True)
        assert factory.pin(5).state  # type: ignore[attr-defined]  # gpiozero's, untyped
        assert leds.state("link")
        leds.set("link", False)
        assert not factory.pin(5).state  # type: ignore[attr-defined]
    finally:
        leds.close()
