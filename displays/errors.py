"""One root exception for the displays package; each leaf is also the matching builtin."""

from __future__ import annotations

__all__ = ["DisplayError", "FontError", "SinkError", "VoiceError"]


class DisplayError(Exception):
    """Root of everything the displays package raises on purpose."""


class FontError(DisplayError, OSError):
    """A font file is missing or unreadable."""


class SinkError(DisplayError, RuntimeError):
    """A display device cannot be opened or refuses a frame."""


class VoiceError(DisplayError, RuntimeError):
    """An announcement cannot be synthesised or played."""
