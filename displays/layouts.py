"""Which layout an LED panel gets, and what every layout offers the board agent.

Everything arrives as plain values, as luma and gpiozero take them: a ``PanelSpec`` (size,
driver, rotation, and the window or zone it shows) and a ``HallListing`` (the hall's
services and windows). A panel with ``window`` is that window's strip; otherwise it is a
call board for its ``zone``, or for the whole hall when it has none. Reading the hall file
is the agent's job (``edge.hall_devices`` turns its devices into these values).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from displays.fonts import BitmapFont
from displays.strip import StripSpec, WindowStrip

if TYPE_CHECKING:  # Pillow and the board: not imported by a Pi with only serial strips
    from PIL import Image

    from displays.board import CallBoard, CallStyle
    from hallq.messages import CallEvent

__all__ = ["HallListing", "Layout", "PanelSpec", "frames", "make_layout", "panel_size"]


@dataclass(frozen=True, slots=True)
class PanelSpec:
    """One LED panel: its pixels, how it is driven and what it shows."""

    name: str
    width: int
    height: int
    driver: Literal["max7219", "serial"]
    window: int | None = None
    zone: str | None = None
    # a board with no zone, in a hall of several 办税点: the zones of the one it stands in
    zones: frozenset[str] | None = None
    # MAX7219 chains only: the SPI bus and how the modules are turned
    spi_port: int = 0
    spi_device: int = 0
    block_orientation: int = 0
    rotate: int = 0


class _ServiceLike(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def width(self) -> int: ...


class _WindowLike(Protocol):
    @property
    def number(self) -> int: ...
    @property
    def zone(self) -> str: ...
    def weights(self) -> dict[str, float]: ...


class _ZoneLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def site(self) -> str: ...


@dataclass(frozen=True, slots=True)
class HallListing:
    """What a call board lists: services as (code, name, digits in a ticket number),
    windows as (number, zone, codes of the services it serves) and, where the hall has
    several 办税点, zones as (zone, site): a zone board counts its own site's waiting."""

    services: tuple[tuple[str, str, int], ...]
    windows: tuple[tuple[int, str, frozenset[str]], ...]
    zone_sites: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls,
        services: Iterable[_ServiceLike],
        windows: Iterable[_WindowLike],
        zones: Iterable[_ZoneLike] = (),
    ) -> HallListing:
        """From anything shaped like services, windows and zones (the hall file's, a
        test's)."""
        return cls(
            services=tuple((s.code, s.name, s.width) for s in services),
            windows=tuple((w.number, w.zone, frozenset(w.weights())) for w in windows),
            zone_sites=tuple((z.id, z.site) for z in zones),
        )


class Layout(Protocol):
    """What a board agent drives; ``update(state, now)`` differs (BoardState or WindowState)."""

    @property
    def size(self) -> tuple[int, int]: ...

    def frame_at(self, t: float) -> Image.Image: ...

    def next_change(self, t: float) -> float | None: ...

    def set_online(self, online: bool) -> None: ...

    def note_call(self, event: CallEvent, now: float) -> None: ...


def panel_size(panel: PanelSpec) -> tuple[int, int]:
    """The size frames are drawn at: the panel's, turned when a MAX7219 chain is rotated."""
    if panel.driver == "max7219" and panel.rotate in (1, 3):
        return panel.height, panel.width
    return panel.width, panel.height


def make_layout(
    panel: PanelSpec,
    hall: HallListing,
    *,
    font: BitmapFont | None = None,
    message: str | None = None,
    call_style: CallStyle = "auto",
    scroll_speed: float = 32.0,
) -> CallBoard | WindowStrip:
    width, height = panel_size(panel)
    ticket_chars = 1 + max(digits for _, _, digits in hall.services)
    if panel.window is not None:
        return WindowStrip(
            StripSpec(
                width,
                height,
                panel.window,
                message=message,
                ticket_chars=ticket_chars,
                scroll_speed=scroll_speed,
            ),
            font,
        )
    from displays.board import BoardSpec, CallBoard

    def covers(zone: str) -> bool:
        if panel.zone is not None:
            return zone == panel.zone
        return panel.zones is None or zone in panel.zones

    windows = [w for w in hall.windows if covers(w[1])]
    sites = dict(hall.zone_sites)
    site = sites.get(panel.zone or next(iter(panel.zones or ()), ""))
    served: set[str] = set()
    for _, _, codes in windows:
        served.update(codes)
    services = tuple(
        (code, name)
        for code, name, _ in hall.services
        if (panel.zone is None and panel.zones is None) or code in served
    )
    spec = BoardSpec(
        width,
        height,
        zone=panel.zone,
        site=site,
        zones=panel.zones if panel.zone is None else None,
        services=services,
        call_style=call_style,
        ticket_chars=ticket_chars,
        window_digits=len(str(max((number for number, _, _ in windows), default=1))),
        scroll_speed=scroll_speed,
    )
    return CallBoard(spec, font)


def frames(layout: Layout, start: float, stop: float, fps: float) -> Iterator[Image.Image]:
    """Frames at a fixed rate from ``start`` up to ``stop``: for GIFs, tests and the demo."""
    if not fps > 0:
        raise ValueError(f"fps must be above 0, got {fps}")
    count = max(0, round((stop - start) * fps))
    for i in range(count):
        yield layout.frame_at(start + i / fps)
