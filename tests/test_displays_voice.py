"""Voice calls: the words, clips and espeak-ng, and the announcer's queue rules.

The announcer tests hold each playback open until the test releases it, so "never two at
once" and "dropped because superseded" are checked by construction, not by timing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import shutil
import stat
import wave
from collections.abc import Sequence
from pathlib import Path

import pytest

from displays.announcer import Announcer
from displays.errors import VoiceError
from displays.players import AplayPlayer, WavFilePlayer
from displays.voice import (
    CLIP_NAMES,
    ClipVoice,
    EspeakVoice,
    FallbackVoice,
    call_words,
    number_words,
    ticket_words,
    words_text,
)
from hallq.messages import CallEvent

from .ci import missing

T0 = dt.datetime(2026, 11, 30, 9, 30, tzinfo=dt.UTC)
RATE = 8000


# --- words ----------------------------------------------------------------------------------


def test_ticket_is_read_digit_by_digit() -> None:
    assert ticket_words("A023") == ["A", "零", "二", "三"]
    assert ticket_words("B0107") == ["B", "零", "一", "零", "七"]
    with pytest.raises(VoiceError):
        ticket_words("a23")


@pytest.mark.parametrize(
    ("n", "spoken"),
    [(1, "一"), (10, "十"), (15, "十五"), (20, "二十"), (47, "四十七"), (100, "一百"),
     (105, "一百零五"), (110, "一百一十"), (999, "九百九十九")],
)  # fmt: skip
def test_window_is_read_as_a_number(n: int, spoken: str) -> None:
    assert "".join(number_words(n)) == spoken


def test_the_call_sentence() -> None:
    assert words_text(call_words("A023", 15)) == "请A零二三号到十五号窗口办理"


# --- clips ----------------------------------------------------------------------------------


def write_clip(path: Path, frames: int, *, rate: int = RATE, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes([len(path.stem) % 256, 0]) * frames * channels)


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    """A clip per word, each of a different length so the sum tells them apart."""
    directory = tmp_path / "clips"
    directory.mkdir()
    for i, name in enumerate(sorted(set(CLIP_NAMES.values()))):
        write_clip(directory / f"{name}.wav", 100 + i)
    return directory


def clip_frames(directory: Path, name: str) -> int:
    with wave.open(str(directory / f"{name}.wav")) as w:
        return int(w.getnframes())


async def test_clips_concatenate_to_the_summed_length(clips: Path) -> None:
    words = call_words("A023", 15)
    wav = await ClipVoice(clips).synthesize(words)
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        total = w.getnframes()
        audio = w.readframes(total)
    assert total == sum(clip_frames(clips, CLIP_NAMES[word]) for word in words)
    first = clip_frames(clips, "qing")
    assert audio[: 2 * first] == bytes([len("qing"), 0]) * first  # 请 comes first


async def test_a_chime_clip_is_played_first(clips: Path) -> None:
    write_clip(clips / "chime.wav", 50)
    wav = await ClipVoice(clips).synthesize(["请"])
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getnframes() == 50 + clip_frames(clips, "qing")


async def test_clips_that_do_not_match_are_named(clips: Path) -> None:
    write_clip(clips / "hao.wav", 100, rate=16000)
    with pytest.raises(VoiceError, match=r"hao\.wav is 16000 Hz.*8000 Hz"):
        await ClipVoice(clips).synthesize(call_words("A023", 15))


async def test_missing_clips_fall_back_to_espeak_with_one_warning(
    clips: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (clips / "7.wav").unlink()
    voice = FallbackVoice(ClipVoice(clips), FakeEspeak())
    assert await voice.synthesize(call_words("A007", 1)) == b"espeak"
    assert await voice.synthesize(call_words("A017", 1)) == b"espeak"
    assert len([r for r in caplog.records if "7.wav" in r.getMessage()]) == 1
    assert (await voice.synthesize(call_words("A023", 15))).startswith(b"RIFF")
    with pytest.raises(VoiceError, match=r"7\.wav"):
        await FallbackVoice(ClipVoice(clips), None).synthesize(call_words("A007", 1))


class FakeEspeak(EspeakVoice):
    async def synthesize(self, words: Sequence[str]) -> bytes:
        return b"espeak"


# --- espeak-ng ------------------------------------------------------------------------------


def need_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        missing("espeak-ng (apt-get install espeak-ng)")


async def test_espeak_produces_a_wav() -> None:
    need_espeak()
    wav = await EspeakVoice().synthesize(call_words("A023", 15))
    with wave.open(io.BytesIO(wav)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert 1.0 < seconds < 15.0  # a sentence, not a click and not garbage sizes


async def test_espeak_failure_is_a_voice_error() -> None:
    need_espeak()
    # espeak-ng itself speaks English for an unknown voice and exits 0; we refuse instead.
    with pytest.raises(VoiceError, match=r"no voice 'no-such-voice'.*cmn-latn-pinyin"):
        await EspeakVoice(voice="no-such-voice").synthesize(["请"])
    with pytest.raises(VoiceError, match="not found"):
        await EspeakVoice(executable="/nonexistent/espeak-ng").synthesize(["请"])


# --- players --------------------------------------------------------------------------------


async def test_wav_file_player_writes_numbered_files(tmp_path: Path) -> None:
    player = WavFilePlayer(tmp_path / "out")
    await player.play(b"one")
    await player.play(b"two")
    assert [p.name for p in player.files] == ["0001.wav", "0002.wav"]
    assert player.files[1].read_bytes() == b"two"


async def test_aplay_player_pipes_the_wav(tmp_path: Path) -> None:
    received = tmp_path / "received"
    script = tmp_path / "aplay"
    script.write_text(f'#!/bin/sh\necho "$@" > {received}.args\ncat > {received}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    await AplayPlayer("plughw:1,0", executable=str(script)).play(b"RIFF-data")
    assert received.read_bytes() == b"RIFF-data"
    assert Path(f"{received}.args").read_text().split() == ["-q", "-D", "plughw:1,0", "-"]
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\ncat >/dev/null\necho 'no such card' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(VoiceError, match="no such card"):
        await AplayPlayer(executable=str(failing)).play(b"x")


# --- the announcer --------------------------------------------------------------------------


class TextVoice:
    async def synthesize(self, words: Sequence[str]) -> bytes:
        return words_text(words).encode()


class GatedPlayer:
    """Each playback starts, then waits until the test lets it finish."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.playing = 0
        self.most_at_once = 0
        self._gates: list[asyncio.Event] = []
        self._changed = asyncio.Condition()

    async def play(self, wav: bytes) -> None:
        said = wav.decode()
        gate = asyncio.Event()
        async with self._changed:
            self.playing += 1
            self.most_at_once = max(self.most_at_once, self.playing)
            self.events.append(("start", said))
            self._gates.append(gate)
            self._changed.notify_all()
        await gate.wait()
        self.playing -= 1
        self.events.append(("end", said))

    async def started(self, count: int) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: len(self._gates) >= count)

    def finish(self, index: int) -> None:
        self._gates[index].set()


def said(ticket: str, window: int) -> str:
    return words_text(call_words(ticket, window))


def event(ticket: str, window: int, *, recall: int = 0, zone: str = "hall-1") -> CallEvent:
    return CallEvent(
        ticket=ticket, service="tax-filing", window=window, zone=zone, recall=recall, ts=T0
    )


def announcer(player: GatedPlayer, zone: str | None = None) -> Announcer:
    return Announcer(TextVoice(), player, zone=zone, clock=lambda: T0 + dt.timedelta(seconds=5))


async def test_announcements_never_overlap() -> None:
    player = GatedPlayer()
    async with announcer(player) as a:
        for ticket, window in (("A001", 1), ("A002", 2), ("A003", 3)):
            a.submit(event(ticket, window))
        for i in range(3):
            await player.started(i + 1)
            assert player.playing == 1
            player.finish(i)
        await asyncio.wait_for(a.idle(), 5)
    assert player.most_at_once == 1
    assert player.events == [
        ("start", said("A001", 1)), ("end", said("A001", 1)),
        ("start", said("A002", 2)), ("end", said("A002", 2)),
        ("start", said("A003", 3)), ("end", said("A003", 3)),
    ]  # fmt: skip


async def test_a_newer_call_at_the_same_window_drops_the_waiting_one() -> None:
    player = GatedPlayer()
    async with announcer(player) as a:
        a.submit(event("A001", 1))
        await player.started(1)  # A001 is playing; the next two wait
        a.submit(event("A023", 15))
        a.submit(event("B002", 7))
        a.submit(event("A024", 15))  # window 15 moved on before A023 was heard
        player.finish(0)
        await player.started(2)
        player.finish(1)
        await player.started(3)
        player.finish(2)
        await asyncio.wait_for(a.idle(), 5)
    assert a.played() == ["A001@1", "B002@7", "A024@15"]
    assert [(x.event.ticket, o) for x, o in a.log if o != "played"] == [("A023", "superseded")]


async def test_a_call_withdrawn_before_it_was_heard_is_dropped() -> None:
    """A003 was called at window 3, then voided (its key press was issued offline
    instead): nobody holds it, so nobody is asked to come for it."""
    player = GatedPlayer()
    async with announcer(player) as a:
        a.submit(event("A001", 1))
        await player.started(1)  # A001 is playing; the next two wait
        a.submit(event("A003", 3))
        a.submit(event("B002", 7))
        a.withdraw("A003", 3)
        a.withdraw("A009", 3)  # (another ticket: changes nothing)
        player.finish(0)
        await player.started(2)
        player.finish(1)
        await asyncio.wait_for(a.idle(), 5)
    assert a.played() == ["A001@1", "B002@7"]
    assert [(x.event.ticket, o) for x, o in a.log if o != "played"] == [("A003", "withdrawn")]


async def test_a_recall_is_announced_again() -> None:
    player = GatedPlayer()
    async with announcer(player) as a:
        a.submit(event("A023", 15))
        await player.started(1)
        player.finish(0)
        await asyncio.wait_for(a.idle(), 5)
        assert a.submit(event("A023", 15, recall=1))
        await player.started(2)
        player.finish(1)
        await asyncio.wait_for(a.idle(), 5)
    assert a.played() == ["A023@15", "A023@15"]
    assert [e for e in player.events if e[0] == "start"] == [("start", said("A023", 15))] * 2


async def test_a_redelivered_event_is_announced_once() -> None:
    player = GatedPlayer()
    first = event("A023", 15)
    async with announcer(player) as a:
        assert a.submit(first)
        assert not a.submit(first.model_copy())  # QoS 1 delivered it twice: same id
        await player.started(1)
        player.finish(0)
        await asyncio.wait_for(a.idle(), 5)
    assert a.played() == ["A023@15"]


async def test_an_old_backlog_is_not_announced() -> None:
    player = GatedPlayer()
    late = Announcer(TextVoice(), player, clock=lambda: T0 + dt.timedelta(minutes=3))
    async with late:
        late.submit(event("A023", 15))
        await asyncio.wait_for(late.idle(), 5)
    assert player.events == []
    assert late.log[0][1] == "too_old"


async def test_other_zones_are_ignored() -> None:
    player = GatedPlayer()
    a = announcer(player, zone="vat")
    assert not a.submit(event("A023", 15))
    assert a.submit(event("G001", 31, zone="vat"))


async def test_a_speaker_with_no_zone_speaks_for_its_own_building_only() -> None:
    """In a hall of two 办税点, a zone-less speaker in the main building called the
    branch's tickets too: it speaks for its agent's site's zones."""
    from hallq.config import load_config

    hall = load_config(Path(__file__).parents[1] / "examples" / "liwan.toml")
    zones = hall.scope_zones("board-main")
    assert zones == frozenset({"hall-1", "hall-2", "vat"})
    a = Announcer(TextVoice(), GatedPlayer(), zones=zones, clock=lambda: T0)
    assert not a.submit(event("D219", 42, zone="branch"))
    assert a.submit(event("A023", 15))
    assert hall.scope_zones("board-branch") is None  # (its agent names no site: a zone does)


async def test_a_failed_announcement_does_not_stop_the_queue() -> None:
    class Flaky(TextVoice):
        async def synthesize(self, words: Sequence[str]) -> bytes:
            if "一" in words:
                raise VoiceError("synthesis failed")
            return await super().synthesize(words)

    player = GatedPlayer()
    async with Announcer(Flaky(), player, clock=lambda: T0) as a:
        a.submit(event("A001", 1))
        a.submit(event("A002", 2))
        await player.started(1)
        player.finish(0)
        await asyncio.wait_for(a.idle(), 5)
    assert [o for _, o in a.log] == ["failed", "played"]


async def test_the_whole_path_to_wav_files(clips: Path, tmp_path: Path) -> None:
    player = WavFilePlayer(tmp_path / "calls")
    async with Announcer(ClipVoice(clips), player, clock=lambda: T0) as a:
        a.submit(event("A023", 15))
        a.submit(event("B007", 16))
        await asyncio.wait_for(a.idle(), 5)
    assert len(player.files) == 2
    with wave.open(str(player.files[0])) as w:
        assert w.getnframes() == sum(
            clip_frames(clips, CLIP_NAMES[x]) for x in call_words("A023", 15)
        )
