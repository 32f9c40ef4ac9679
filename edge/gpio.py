"""GPIO buttons and indicator LEDs through gpiozero, with a pin factory chosen by name.

lgpio is the default (the only backend that works on the Pi 5; the `pi` extra installs
it); RPi.GPIO for older boards, if installed by hand (hallq no longer ships it: it is
unmaintained and fails on the Pi 5); the mock factory for tests and the demo. Both
hardware backends are imported only when chosen, so the coordinator and CI never need
them. Debouncing is ours, not gpiozero's: a press counts once the pin has been quiet for
``debounce_s``, so contact bounce (which gpiozero's mock factory does not simulate) can be
shown in tests and never double-calls.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hallq.errors import HallqError

FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
    "mock": ("gpiozero.pins.mock", "MockFactory"),
}
LED_PREFIX = "led_"


class GpioError(HallqError, RuntimeError):
    """A GPIO backend is missing or a pin cannot be used."""


def make_pin_factory(name: str | None = None) -> Any:
    """The gpiozero pin factory called ``name`` (default: $HALLQ_PIN_FACTORY, else lgpio)."""
    chosen = name or os.environ.get("HALLQ_PIN_FACTORY") or "lgpio"
    if chosen not in FACTORIES:
        raise GpioError(f"unknown pin factory {chosen!r}; use one of {', '.join(FACTORIES)}")
    module, cls = FACTORIES[chosen]
    try:
        return getattr(importlib.import_module(module), cls)()
    except ImportError as exc:
        fix = (
            "pip install RPi.GPIO, or use the default lgpio"
            if chosen == "rpigpio"
            else "on a Pi, pip install 'hallq[agent,pi]'"
        )
        raise GpioError(
            f"pin factory {chosen!r} needs a library that is not installed ({exc.name}): {fix}"
        ) from exc
    except Exception as exc:  # the backends raise their own types for missing chips/SoCs
        raise GpioError(f"pin factory {chosen!r} cannot start on this machine: {exc}") from exc


@dataclass
class _Pin:
    button: Any
    level: bool = False
    latched: bool = False
    timer: asyncio.TimerHandle | None = None


class Buttons:
    """Named push buttons; ``on_press(name)`` runs on the event loop, once per real press."""

    def __init__(
        self,
        pins: Mapping[str, int],
        factory: Any,
        on_press: Callable[[str], None],
        *,
        loop: asyncio.AbstractEventLoop,
        debounce_s: float = 0.03,
        pull_up: bool = True,
    ) -> None:
        from gpiozero import Button

        self._loop = loop
        self._on_press = on_press
        self.debounce_s = debounce_s
        self.presses = 0
        self.bounces = 0
        self._pins: dict[str, _Pin] = {}
        try:
            for name, number in pins.items():
                button = Button(number, pull_up=pull_up, bounce_time=None, pin_factory=factory)
                pin = self._pins[name] = _Pin(button, level=bool(button.is_pressed))
                button.when_pressed = self._edge_callback(name, True)
                button.when_released = self._edge_callback(name, False)
                pin.latched = pin.level
        except Exception as exc:
            self.close()
            raise GpioError(f"cannot use GPIO pins {dict(pins)}: {exc}") from exc

    def _edge_callback(self, name: str, pressed: bool) -> Callable[[], None]:
        def callback() -> None:  # gpiozero calls this from its own thread
            self._loop.call_soon_threadsafe(self._edge, name, pressed)

        return callback

    def _edge(self, name: str, pressed: bool) -> None:
        pin = self._pins.get(name)
        if pin is None:
            return
        if pin.timer is not None:
            pin.timer.cancel()
            self.bounces += 1
        pin.level = pressed
        pin.timer = self._loop.call_later(self.debounce_s, self._settle, name)

    def _settle(self, name: str) -> None:
        pin = self._pins[name]
        pin.timer = None
        if pin.level and not pin.latched:
            pin.latched = True
            self.presses += 1
            self._on_press(name)
        elif not pin.level:
            pin.latched = False

    def close(self) -> None:
        for pin in self._pins.values():
            if pin.timer is not None:
                pin.timer.cancel()
            pin.button.close()
        self._pins.clear()


class Indicators:
    """Named LEDs (a link lamp on a pad, a paper lamp on a dispenser)."""

    def __init__(self, pins: Mapping[str, int], factory: Any) -> None:
        from gpiozero import LED

        self._leds = {name: LED(number, pin_factory=factory) for name, number in pins.items()}

    def set(self, name: str, on: bool) -> None:
        led = self._leds.get(name)
        if led is not None:
            led.value = on

    def state(self, name: str) -> bool:
        return bool(self._leds[name].value)

    def close(self) -> None:
        for led in self._leds.values():
            led.close()


def split_pins(pins: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Config ``gpio`` tables list keys and lamps together; lamps are named ``led_*``."""
    buttons = {k: v for k, v in pins.items() if not k.startswith(LED_PREFIX)}
    leds = {k[len(LED_PREFIX) :]: v for k, v in pins.items() if k.startswith(LED_PREFIX)}
    return buttons, leds
