"""The 16-pixel CJK bitmap font the boards draw with: GNU Unifont, glyph by glyph.

Unifont is a bitmap font stored as OpenType outlines of whole pixels, so FreeType at 16 px
turns it back into the exact 1-bit bitmaps, with no anti-aliasing to threshold away. Glyphs
are drawn one at a time and cached: a board redraws the same few dozen characters many
times a second, and per-glyph drawing lets each character come from the first font that
has it, with a visible box (and one log line) for a character none has.

The bundled subset (``fontfiles/unifont-subset.otf``) comes first: it was cut from the same
Unifont, so default layouts look the same on every board whether or not the Debian package
``fonts-unifont`` is installed; the system Unifont then supplies anything a notice uses
beyond the subset. The subset's glyphs also ship pre-drawn (``unifont-subset.bits``, the
same pixels FreeType draws from it), so a window or board Pi that shows only default texts
and hall names never loads FreeType (~1.5 MB of an agent's memory).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Literal, cast, overload

from typing_extensions import TypeVar

from displays.bits import Bits
from displays.errors import FontError

if TYPE_CHECKING:
    from PIL import Image
    from PIL.ImageFont import FreeTypeFont

    Raster = Image.Image | Bits

# what a font draws: Pillow images (the default) or ``Bits`` (``pillow=False``)
R = TypeVar("R", "Image.Image", Bits, default="Image.Image")

__all__ = [
    "BUNDLED_BITS",
    "BUNDLED_FONT",
    "GLYPH_HEIGHT",
    "SYSTEM_UNIFONT_PATHS",
    "UNIFONT_ENV",
    "BitmapFont",
    "Glyph",
    "bundled_glyphs",
    "cmap_coverage",
    "default_font",
    "draw_glyph",
    "find_unifont",
    "font_coverage",
    "glyph_bits",
]

log = logging.getLogger("displays.fonts")

GLYPH_HEIGHT = 16
BUNDLED_FONT = Path(__file__).with_name("fontfiles") / "unifont-subset.otf"
BUNDLED_CHARS = BUNDLED_FONT.with_suffix(".txt")  # its cmap, one line of characters
BUNDLED_BITS = BUNDLED_FONT.with_suffix(".bits")  # its glyphs as FreeType draws them at 16 px
_FONT_MAGIC = (b"OTTO", b"\x00\x01\x00\x00", b"true", b"ttcf")
UNIFONT_ENV = "HALLQ_UNIFONT"
# Debian/Ubuntu fonts-unifont: OTF since bookworm (15.x), TTF in older releases.
SYSTEM_UNIFONT_PATHS = (
    Path("/usr/share/fonts/opentype/unifont/unifont.otf"),
    Path("/usr/share/fonts/truetype/unifont/unifont.ttf"),
    Path("/usr/share/fonts/unifont/unifont.otf"),
    Path("/usr/local/share/fonts/unifont.otf"),
)
_TEXT_CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class Glyph(Generic[R]):
    image: R  # mode "1", GLYPH_HEIGHT high, as wide as the advance
    font: Path | None  # None: no font has the character; ``image`` is a box

    @property
    def width(self) -> int:
        return self.image.width


def find_unifont() -> Path | None:
    """The system Unifont: ``$HALLQ_UNIFONT`` if set, else the Debian package's file."""
    override = os.environ.get(UNIFONT_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FontError(f"{UNIFONT_ENV}={override!r} is not a font file")
        return path
    return next((p for p in SYSTEM_UNIFONT_PATHS if p.is_file()), None)


@cache
def font_coverage(path: Path) -> frozenset[int]:
    """Code points the font maps to a glyph; read once per process (80 ms for all of Unifont).

    The bundled subset's map comes from its character list (``unifont-subset.txt``, written
    from the subset's own cmap and checked against it by a test): a board draws its first
    frame without importing fontTools (~100 ms and several MB on every window Pi)."""
    if path == BUNDLED_FONT and BUNDLED_CHARS.is_file():
        return frozenset(map(ord, BUNDLED_CHARS.read_text(encoding="utf-8").rstrip("\n")))
    return cmap_coverage(path)


def cmap_coverage(path: Path) -> frozenset[int]:
    """The code points of the font file's own Unicode cmap (imports fontTools)."""
    from fontTools.ttLib import TTFont, TTLibError

    quiet = logging.getLogger("fontTools")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # Unifont's 1970 head timestamps are reported as warnings
    try:
        with TTFont(path, lazy=True) as font:
            cmap = font.getBestCmap()
    except (OSError, TTLibError) as exc:
        raise FontError(f"cannot read the character map of {path}: {exc}") from exc
    finally:
        quiet.setLevel(level)
    if cmap is None:
        raise FontError(f"{path} has no Unicode character map")
    return frozenset(cmap)


def draw_glyph(face: FreeTypeFont, ch: str) -> Image.Image:
    """``ch`` as FreeType draws it at 16 px, as wide as its advance (before any baseline move)."""
    from PIL import Image, ImageDraw

    width = round(face.getlength(ch))
    image = Image.new("1", (width, GLYPH_HEIGHT))
    if width:
        ImageDraw.Draw(image).text((0, 0), ch, font=face, fill=1)
    return image


def glyph_bits(image: Image.Image) -> bytes:
    """One glyph in ``unifont-subset.bits``: its width, then its rows (mode "1" bytes)."""
    return bytes((image.width,)) + image.tobytes()


@cache
def bundled_glyphs() -> dict[str, Image.Image]:
    """The bundled subset's glyphs, pre-drawn, as Pillow images (see ``bundled_bits``)."""
    from PIL import Image

    return {
        ch: Image.frombytes("1", size, rows) if size[0] else Image.new("1", size)
        for ch, (size, rows) in bundled_bits().items()
    }


@cache
def bundled_bits() -> dict[str, tuple[tuple[int, int], bytes]]:
    """The bundled subset's glyphs, pre-drawn: ``unifont-subset.bits`` holds them in the
    order of ``unifont-subset.txt`` (both written by ``python -m displays.subset_font``
    from the subset itself, and checked against it by a test), each as its size and rows.
    Empty when the files are missing or do not match; the glyphs are then drawn with
    FreeType."""
    try:
        chars = BUNDLED_CHARS.read_text(encoding="utf-8").rstrip("\n")
        data = BUNDLED_BITS.read_bytes()
    except OSError:
        return {}
    glyphs: dict[str, tuple[tuple[int, int], bytes]] = {}
    at = 0
    for ch in chars:
        if at >= len(data):
            break
        width = data[at]
        end = at + 1 + (width + 7) // 8 * GLYPH_HEIGHT
        glyphs[ch] = ((width, GLYPH_HEIGHT), data[at + 1 : end])
        at = end
    if at != len(data) or len(glyphs) != len(chars):
        log.warning(
            "%s does not match %s; drawing its glyphs with FreeType", BUNDLED_BITS, BUNDLED_CHARS
        )
        return {}
    return glyphs


def _check_font_file(path: Path) -> None:
    """A font file that cannot be one fails here, not at the first glyph it is asked for."""
    try:
        with path.open("rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise FontError(f"cannot load font {path}: {exc}") from exc
    if magic not in _FONT_MAGIC:
        raise FontError(f"cannot load font {path}: not an OpenType or TrueType file")


class BitmapFont(Generic[R]):
    """Fonts tried in order for each character; text comes out as 16-px mode-"1" strips.

    Thread-safe: the emulator may render for the web dashboard while the board agent draws.
    With ``pillow=False`` the strips are ``displays.bits.Bits`` (the same pixels, without
    importing Pillow unless a character must be drawn with FreeType): what a window Pi's
    serial strips take.
    """

    height = GLYPH_HEIGHT

    @overload
    def __init__(
        self: BitmapFont[Image.Image], paths: Sequence[Path | str], *, pillow: Literal[True] = True
    ) -> None: ...

    @overload
    def __init__(
        self: BitmapFont[Bits], paths: Sequence[Path | str], *, pillow: Literal[False]
    ) -> None: ...

    def __init__(self, paths: Sequence[Path | str], *, pillow: bool = True) -> None:
        if not paths:
            raise FontError("a BitmapFont needs at least one font file")
        self.pillow = pillow
        self.paths = tuple(Path(p) for p in paths)
        self._faces: dict[Path, FreeTypeFont] = {}  # loaded when a glyph is not pre-drawn
        for path in self.paths:
            _check_font_file(path)
        self._glyphs: dict[str, Glyph[R]] = {}
        self._texts: OrderedDict[str, R] = OrderedDict()
        self._lock = threading.Lock()
        self.missing: set[str] = set()  # characters drawn as a box, each logged once

    def __repr__(self) -> str:
        return f"BitmapFont({', '.join(p.name for p in self.paths)})"

    def covers(self, ch: str) -> bool:
        return any(ord(ch) in font_coverage(p) for p in self.paths)

    def glyph(self, ch: str) -> Glyph[R]:
        found = self._glyphs.get(ch)
        if found is None:
            with self._lock:
                found = self._glyphs.get(ch) or self._make_glyph(ch)
                self._glyphs[ch] = found
        return found

    def text_width(self, text: str) -> int:
        return sum(self.glyph(ch).width for ch in clean_text(text))

    def new_image(self, size: tuple[int, int]) -> R:
        """A blank frame of the kind this font draws (Pillow's or ``Bits``)."""
        return cast("R", new_raster(size, self.pillow))

    def render(self, text: str) -> R:
        """A strip exactly as wide as ``text``: cached, so do not draw on the result."""
        found = self._texts.get(text)
        if found is not None:
            return found
        glyphs = [self.glyph(ch) for ch in clean_text(text)]
        strip = self.new_image((max(1, sum(g.width for g in glyphs)), GLYPH_HEIGHT))
        x = 0
        for g in glyphs:
            strip.paste(g.image, (x, 0))
            x += g.width
        with self._lock:
            self._texts[text] = strip
            if len(self._texts) > _TEXT_CACHE_SIZE:
                self._texts.popitem(last=False)
        return strip

    def _face(self, path: Path) -> FreeTypeFont:
        face = self._faces.get(path)
        if face is None:
            from PIL import ImageFont

            try:
                face = self._faces[path] = ImageFont.truetype(str(path), GLYPH_HEIGHT)
            except OSError as exc:
                raise FontError(f"cannot load font {path}: {exc}") from exc
        return face

    def _make_glyph(self, ch: str) -> Glyph[R]:
        for path in self.paths:
            if ord(ch) in font_coverage(path):
                image = self._bundled(ch) if path == BUNDLED_FONT else None
                if image is None:
                    drawn = draw_glyph(self._face(path), ch)
                    image = drawn if self.pillow else Bits.frombytes(drawn.size, drawn.tobytes())
                return Glyph(cast("R", _on_cjk_baseline(image)), path)
        if ch not in self.missing:
            self.missing.add(ch)
            log.warning(
                "no font has %r (U+%04X); it is drawn as a box (fonts: %s)",
                ch,
                ord(ch),
                ", ".join(str(p) for p in self.paths),
            )
        return Glyph(cast("R", box_glyph(ch, pillow=self.pillow)), None)

    def _bundled(self, ch: str) -> Raster | None:
        if self.pillow:
            return bundled_glyphs().get(ch)
        found = bundled_bits().get(ch)
        return None if found is None else Bits.frombytes(*found)


def new_raster(size: tuple[int, int], pillow: bool = True) -> Raster:
    """A blank mode-"1" frame: a Pillow image, or ``Bits`` where Pillow is not wanted."""
    if not pillow:
        return Bits(size)
    from PIL import Image

    return Image.new("1", size)


NARROW_DROP = 2  # Unifont's digits end 2 rows above its ideographs' bottom


def _on_cjk_baseline(image: Raster) -> Raster:
    """A half-width glyph moved down onto the ideographs' baseline: Unifont draws digits
    and letters on row 13 and ideographs down to row 15, so "请A023号" would read with the
    number floating above the characters. Glyphs with descenders drop only as far as they
    can without losing a row."""
    if image.width > GLYPH_HEIGHT // 2:
        return image
    box = image.getbbox()
    if box is None:
        return image
    drop = min(NARROW_DROP, GLYPH_HEIGHT - box[3])
    if drop <= 0:
        return image
    moved = new_raster(image.size, not isinstance(image, Bits))
    moved.paste(image.crop((0, 0, image.width, GLYPH_HEIGHT - drop)), (0, drop))  # type: ignore
    return moved


def box_glyph(ch: str, *, pillow: bool = True) -> Raster:
    """The stand-in for a character no font has: an outlined box of the character's width."""
    import unicodedata

    width = 16 if unicodedata.east_asian_width(ch) in ("W", "F") else 8
    image = new_raster((width, GLYPH_HEIGHT), pillow)
    for box in (
        (1, 2, width - 1, 3),
        (1, 13, width - 1, 14),
        (1, 2, 2, 14),
        (width - 2, 2, width - 1, 14),
    ):
        image.paste(1, box)  # the outline of (1, 2)-(width - 2, 13), without ImageDraw
    return image


# Printable ASCII, CJK punctuation, ideographs and fullwidth forms hold no control or
# format character: a hall's texts never need the Unicode tables (unicodedata's ~1 MB
# library, paid in every window Pi's memory for a filter).
_PLAIN = ((" ", "~"), ("\u3000", "\u303f"), ("\u4e00", "\u9fff"), ("\uff01", "\uffef"))


def clean_text(text: str) -> str:
    """Line breaks and tabs become spaces; other control and format characters are dropped."""
    out = []
    for ch in text:
        if ch in "\t\n\r\v\f":
            out.append(" ")
        elif any(low <= ch <= high for low, high in _PLAIN) or _visible(ch):
            out.append(ch)
    return "".join(out)


def _visible(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch) not in ("Cc", "Cf")


def default_font_paths() -> list[Path]:
    paths = [BUNDLED_FONT]
    system = find_unifont()
    if system is not None:
        paths.append(system)
    else:
        log.info("system Unifont not found (Debian: fonts-unifont); using the bundled subset only")
    return paths


@cache
def default_font() -> BitmapFont[Image.Image]:
    """The bundled subset, then the system Unifont; one per process, shared by all layouts."""
    return BitmapFont(default_font_paths())


@cache
def default_bits_font() -> BitmapFont[Bits]:
    """``default_font`` drawing ``Bits``: what serial window strips take (no Pillow)."""
    return BitmapFont(default_font_paths(), pillow=False)


def characters(texts: Iterable[str]) -> str:
    """The distinct characters of ``texts``, sorted: what a font subset must cover."""
    return "".join(sorted({ch for text in texts for ch in clean_text(text)}))
