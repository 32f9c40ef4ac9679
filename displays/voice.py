"""The spoken call "请A023号到15号窗口办理": its words, from recorded clips or espeak-ng.

How numbers are read (the convention of Chinese service halls, and what people expect):

- the ticket digit by digit, letter first: A023 → "A 零 二 三" ("A 二十三" would hide the
  leading zero that is printed on the ticket, and A0023 and A023 would sound the same);
- the window as a number: 15 → "十五", 20 → "二十", 105 → "一百零五" (windows are named
  by their number on the sign, "十五号窗口").

Speech comes from recorded clips when a clip directory is configured (a professional
voice, concatenated with the stdlib ``wave`` module), otherwise from espeak-ng offline.
Clip file names (WAV, all with the same rate, width and channels):

    qing.wav 请   hao.wav 号   dao.wav 到   chuangkou.wav 窗口   banli.wav 办理
    0.wav ... 9.wav 零 ... 九   shi.wav 十   bai.wav 百   A.wav ... Z.wav letters
    chime.wav  optional, played before every call (叮咚)

espeak-ng voice: ``cmn-latn-pinyin``, not ``cmn``. With espeak-ng 1.51 (Debian bookworm)
``-v cmn`` turns each Chinese character into pinyin with tone digits and then reads those
as English ("请" comes out as "qing three"); the pinyin voice reads the same text correctly.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import shutil
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from displays.errors import VoiceError

__all__ = [
    "CLIP_NAMES",
    "ClipVoice",
    "EspeakVoice",
    "FallbackVoice",
    "Synthesizer",
    "call_words",
    "make_voice",
    "number_words",
    "ticket_words",
    "words_text",
]

log = logging.getLogger("displays.voice")

DIGITS = "零一二三四五六七八九"
CLIP_NAMES: dict[str, str] = {
    "请": "qing",
    "号": "hao",
    "到": "dao",
    "窗口": "chuangkou",
    "办理": "banli",
    "十": "shi",
    "百": "bai",
    **{d: str(i) for i, d in enumerate(DIGITS)},
    **{chr(c): chr(c) for c in range(ord("A"), ord("Z") + 1)},
}
CHIME = "chime"
_TICKET = re.compile(r"^[A-Z][0-9]{1,6}$")


def ticket_words(ticket: str) -> list[str]:
    """A023 → ["A", "零", "二", "三"]."""
    if not _TICKET.fullmatch(ticket):
        raise VoiceError(f"cannot read ticket {ticket!r}: expected a letter and digits")
    return [ticket[0], *(DIGITS[int(d)] for d in ticket[1:])]


def number_words(n: int) -> list[str]:
    """1-999 as spoken: 15 → 十五, 20 → 二十, 105 → 一百零五, 110 → 一百一十."""
    if not 1 <= n <= 999:
        raise VoiceError(f"cannot read window number {n}: expected 1-999")
    hundreds, rest = divmod(n, 100)
    tens, ones = divmod(rest, 10)
    words: list[str] = []
    if hundreds:
        words += [DIGITS[hundreds], "百"]
        if tens == 0 and ones:
            words.append("零")
    if tens:
        if tens > 1 or hundreds:
            words.append(DIGITS[tens])
        words.append("十")
    if ones:
        words.append(DIGITS[ones])
    return words


def call_words(ticket: str, window: int) -> list[str]:
    """请 A 零 二 三 号 到 十 五 号 窗口 办理."""
    return ["请", *ticket_words(ticket), "号", "到", *number_words(window), "号", "窗口", "办理"]


def words_text(words: Sequence[str]) -> str:
    return "".join(words)


class Synthesizer(Protocol):
    async def synthesize(self, words: Sequence[str]) -> bytes:
        """A complete WAV file speaking ``words``."""
        ...


class ClipVoice:
    """Concatenates recorded clips; all must share rate, sample width and channels."""

    def __init__(self, directory: str | Path, *, chime: bool = True) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise VoiceError(f"clip directory {self.directory} does not exist")
        self.chime = chime and self._path(CHIME).is_file()

    def __repr__(self) -> str:
        return f"ClipVoice({self.directory})"

    def _path(self, clip: str) -> Path:
        return self.directory / f"{clip}.wav"

    def missing(self, words: Sequence[str]) -> list[str]:
        """Clip files the words need that are not in the directory."""
        out = []
        for word in words:
            name = CLIP_NAMES.get(word)
            path = self._path(name) if name else None
            if path is None or not path.is_file():
                out.append(f"{name}.wav" if name else repr(word))
        return out

    def concatenate(self, words: Sequence[str]) -> bytes:
        clips = ([CHIME] if self.chime else []) + [CLIP_NAMES.get(w, "") for w in words]
        missing = self.missing(words)
        if missing:
            raise VoiceError(f"{self.directory}: missing clips {', '.join(missing)}")
        out = io.BytesIO()
        params: tuple[int, int, int] | None = None
        with wave.open(out, "wb") as sink:
            for clip in clips:
                path = self._path(clip)
                try:
                    with wave.open(str(path), "rb") as source:
                        these = (
                            source.getnchannels(),
                            source.getsampwidth(),
                            source.getframerate(),
                        )
                        if params is None:
                            params = these
                            sink.setnchannels(these[0])
                            sink.setsampwidth(these[1])
                            sink.setframerate(these[2])
                        elif these != params:
                            raise VoiceError(
                                f"{path.name} is {_describe(these)}, the other clips "
                                f"{_describe(params)}; re-export all clips alike"
                            )
                        sink.writeframes(source.readframes(source.getnframes()))
                except (OSError, EOFError, wave.Error) as exc:
                    raise VoiceError(f"cannot read clip {path}: {exc}") from exc
        return out.getvalue()

    async def synthesize(self, words: Sequence[str]) -> bytes:
        return await asyncio.to_thread(self.concatenate, words)


def _describe(params: tuple[int, int, int]) -> str:
    channels, width, rate = params
    return f"{rate} Hz, {8 * width}-bit, {channels} channel{'s' if channels > 1 else ''}"


class EspeakVoice:
    """espeak-ng, offline; it writes a WAV file (``--stdout`` leaves the sizes unset)."""

    def __init__(
        self,
        *,
        voice: str = "cmn-latn-pinyin",
        speed: int = 140,
        executable: str = "espeak-ng",
    ) -> None:
        self.voice = voice
        self.speed = speed
        self.executable = executable
        self._verified = False

    def __repr__(self) -> str:
        return f"EspeakVoice({self.voice}, {self.speed} wpm)"

    def available(self) -> bool:
        return shutil.which(self.executable) is not None

    async def verify(self) -> None:
        """Check the voice exists: espeak-ng quietly speaks English for an unknown voice name."""
        proc = await self._run("--voices")
        out, _ = await proc.communicate()
        known: set[str] = set()
        for line in out.decode("utf-8", "replace").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 5:
                known.update(f.lower() for f in (fields[1], fields[3], fields[4]))
        if self.voice.lower() not in known:
            mandarin = ", ".join(sorted(k for k in known if "cmn" in k)) or "none"
            raise VoiceError(
                f"{self.executable} has no voice {self.voice!r} (Mandarin voices here: {mandarin})"
            )
        self._verified = True

    async def _run(self, *args: str) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                self.executable,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                process_group=0,  # a terminal's Ctrl-C is the agent's (see players)
            )
        except FileNotFoundError as exc:
            raise VoiceError(
                f"{self.executable} not found: apt-get install espeak-ng, "
                "or configure a clip directory"
            ) from exc

    async def synthesize(self, words: Sequence[str]) -> bytes:
        if not self._verified:
            await self.verify()
        text = words_text(words)
        with tempfile.TemporaryDirectory(prefix="hallq-voice-") as tmp:
            out = Path(tmp) / "call.wav"
            proc = await self._run(
                "-v", self.voice, "-s", str(self.speed), "-w", str(out), "--stdin"
            )
            try:
                _, err = await proc.communicate(text.encode("utf-8"))
            except asyncio.CancelledError:  # in its own process group: nobody else ends it
                with contextlib.suppress(ProcessLookupError):  # (it may be done)
                    proc.kill()
                await proc.wait()
                raise
            if proc.returncode != 0 or not out.is_file():
                detail = err.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
                raise VoiceError(f"{self.executable} failed on {text!r}: {detail}")
            return out.read_bytes()


class FallbackVoice:
    """Clips when every clip a call needs is there; espeak-ng otherwise (logged once per gap)."""

    def __init__(self, clips: ClipVoice | None, espeak: EspeakVoice | None) -> None:
        if clips is None and espeak is None:
            raise VoiceError("no voice: configure a clip directory or install espeak-ng")
        self.clips = clips
        self.espeak = espeak
        self._reported: set[str] = set()

    def __repr__(self) -> str:
        return f"FallbackVoice({self.clips!r}, {self.espeak!r})"

    async def synthesize(self, words: Sequence[str]) -> bytes:
        if self.clips is not None:
            missing = self.clips.missing(words)
            if not missing:
                return await self.clips.synthesize(words)
            if self.espeak is None:
                raise VoiceError(f"{self.clips.directory}: missing clips {', '.join(missing)}")
            new = set(missing) - self._reported
            if new:
                self._reported |= new
                log.warning(
                    "%s: missing clips %s; using espeak-ng for such calls",
                    self.clips.directory,
                    ", ".join(sorted(new)),
                )
        assert self.espeak is not None
        return await self.espeak.synthesize(words)


def make_voice(
    clip_dir: str | Path | None = None, *, espeak_voice: str = "cmn-latn-pinyin"
) -> FallbackVoice:
    clips = ClipVoice(clip_dir) if clip_dir is not None else None
    espeak = EspeakVoice(voice=espeak_voice)
    return FallbackVoice(clips, espeak if espeak.available() else None)
