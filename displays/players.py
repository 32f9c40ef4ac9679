"""Where an announcement's WAV goes: the speaker through ALSA, or numbered files.

Players take a complete WAV in memory and return when it has been heard, which is what lets
the announcer guarantee that two calls never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

from displays.errors import VoiceError

__all__ = ["AplayPlayer", "Player", "WavFilePlayer"]


class Player(Protocol):
    async def play(self, wav: bytes) -> None:
        """Returns when the sound has finished playing."""
        ...


class AplayPlayer:
    """ALSA's ``aplay`` reading the WAV from stdin; ``device`` is an ALSA PCM (``-D``)."""

    def __init__(self, device: str | None = None, *, executable: str = "aplay") -> None:
        self.device = device
        self.executable = executable

    def __repr__(self) -> str:
        return f"AplayPlayer({self.device or 'default'})"

    async def play(self, wav: bytes) -> None:
        args = [self.executable, "-q", *(["-D", self.device] if self.device else []), "-"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                process_group=0,  # a terminal's Ctrl-C is the agent's: it kills us on cancel
            )
        except FileNotFoundError as exc:
            raise VoiceError(f"{self.executable} not found: apt-get install alsa-utils") from exc
        try:
            _, err = await proc.communicate(wav)
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):  # (it may be done)
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            detail = err.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
            raise VoiceError(f"{self}: {detail}")


class WavFilePlayer:
    """Writes each announcement to ``directory/0001.wav``, … instead of a speaker (demo, tests)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []

    def __repr__(self) -> str:
        return f"WavFilePlayer({self.directory})"

    async def play(self, wav: bytes) -> None:
        path = self.directory / f"{len(self.files) + 1:04d}.wav"
        await asyncio.to_thread(path.write_bytes, wav)
        self.files.append(path)
