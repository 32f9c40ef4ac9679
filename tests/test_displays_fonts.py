"""The 16-px font: exact CJK bitmaps, the bundled subset's coverage, boxes for the unknown."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from displays.errors import FontError
from displays.fonts import (
    BUNDLED_CHARS,
    BUNDLED_FONT,
    GLYPH_HEIGHT,
    UNIFONT_ENV,
    BitmapFont,
    bundled_glyphs,
    clean_text,
    cmap_coverage,
    draw_glyph,
    find_unifont,
    font_coverage,
)
from displays.subset_font import build_subset, hall_names, required_text
from displays.texts import COMFORT_LEVELS, PAUSED

from .ci import missing


def system_unifont() -> Path:
    """The Debian fonts-unifont file; CI installs it, elsewhere its tests skip."""
    path = find_unifont()
    if path is None:
        missing("the system Unifont (apt-get install fonts-unifont)")
    return path


@pytest.fixture
def subset() -> BitmapFont:
    return BitmapFont([BUNDLED_FONT])


def art(image: Image.Image) -> list[str]:
    return [
        "".join("#" if image.getpixel((x, y)) else "." for x in range(image.width))
        for y in range(image.height)
    ]


def test_kou_is_unifonts_exact_16px_box(subset: BitmapFont) -> None:
    glyph = subset.glyph("口")
    assert glyph.font == BUNDLED_FONT
    assert art(glyph.image) == [
        "................",
        "................",
        "..###########...",
        "..#.........#...",
        "..#.........#...",
        "..#.........#...",
        "..#.........#...",
        "..#.........#...",
        "..#.........#...",
        "..#.........#...",
        "..#.........#...",
        "..#.........#...",
        "..#.........#...",
        "..###########...",
        "..#.........#...",
        "................",
    ]


def test_cjk_is_16_wide_and_latin_8_wide_on_16_rows(subset: BitmapFont) -> None:
    for ch in "号窗请暂":
        assert subset.glyph(ch).image.size == (16, 16)
    for ch in "A0→":
        assert subset.glyph(ch).image.size == (8, 16)
    strip = subset.render("A023→15号窗口")
    assert strip.size == (4 * 8 + 8 + 2 * 8 + 3 * 16, 16)
    assert strip.mode == "1"


def test_yi_is_one_horizontal_stroke(subset: BitmapFont) -> None:
    rows = art(subset.glyph("一").image)
    lit = [y for y, row in enumerate(rows) if "#" in row]
    assert len(lit) == 1
    assert rows[lit[0]].count("#") >= 12


def test_text_is_pure_one_bit_with_no_grey(subset: BitmapFont) -> None:
    image = subset.render("请A023号到15号窗口办理")
    assert image.mode == "1"
    assert {value for _, value in image.convert("L").getcolors() or []} == {0, 255}


def test_bundled_character_list_is_the_subsets_own_cmap() -> None:
    # boards trust the list instead of parsing the font: a stale list would draw a box for
    # a character the subset has, or ask the subset for one it lacks
    assert font_coverage(BUNDLED_FONT) == cmap_coverage(BUNDLED_FONT)


def test_subset_covers_every_default_string_and_hall_name() -> None:
    covered = font_coverage(BUNDLED_FONT)
    needed = required_text()
    missing = [ch for ch in needed if ord(ch) not in covered]
    assert not missing, (
        f"bundled subset lacks {''.join(missing)!r}: run python -m displays.subset_font"
    )
    for word in (*COMFORT_LEVELS, PAUSED, "申报纳税", "营改增绿色通道", "社保费征缴"):
        assert word in needed or all(ch in needed for ch in word)


def test_the_chars_file_lists_what_the_subset_was_cut_for() -> None:
    listed = BUNDLED_FONT.with_suffix(".txt").read_text(encoding="utf-8").rstrip("\n")
    assert listed == required_text()


def test_hall_names_come_from_the_hall_file() -> None:
    names = hall_names(Path(__file__).parents[1] / "examples" / "liwan.toml")
    assert "发票办理" in names
    assert "营改增服务专区" in names


def test_missing_glyph_is_a_box_logged_once(
    subset: BitmapFont, caplog: pytest.LogCaptureFixture
) -> None:
    assert not subset.covers("龘")
    with caplog.at_level(logging.WARNING, logger="displays.fonts"):
        first = subset.render("A龘")
        subset.render("龘龘")
        subset.render("B龘C")
    lines = [r for r in caplog.records if "U+9F98" in r.getMessage()]
    assert len(lines) == 1
    assert subset.missing == {"龘"}
    box = art(first.crop((8, 0, 24, 16)))
    assert box[2] == "." + "#" * 14 + "."  # top edge
    assert box[13] == "." + "#" * 14 + "."  # bottom edge
    assert all(row[1] == "#" and row[14] == "#" for row in box[2:14])
    assert art(subset.render("\x00"))  # a control character is dropped, not boxed
    assert subset.missing == {"龘"}


def test_missing_narrow_char_is_a_narrow_box(subset: BitmapFont) -> None:
    assert subset.glyph("ß").image.size == (8, 16)


def test_control_characters_are_cleaned() -> None:
    assert clean_text("请\n到\t窗口\u200b\x07") == "请 到 窗口"


def test_system_unifont_fills_in_what_the_subset_lacks() -> None:
    path = system_unifont()
    font = BitmapFont([BUNDLED_FONT, path])
    assert font.glyph("号").font == BUNDLED_FONT
    glyph = font.glyph("龘")
    assert glyph.font == path
    assert glyph.image.size == (16, 16)
    assert not font.missing


def test_subset_draws_exactly_like_the_full_unifont() -> None:
    full = BitmapFont([system_unifont()])
    subset = BitmapFont([BUNDLED_FONT])
    for ch in required_text():
        assert subset.glyph(ch).image.tobytes() == full.glyph(ch).image.tobytes(), ch


def test_regenerating_the_subset_is_reproducible(tmp_path: Path) -> None:
    source = system_unifont()
    out = tmp_path / "again.otf"
    build_subset(source, out, required_text())
    again = tmp_path / "again2.otf"
    build_subset(source, again, required_text())
    assert out.read_bytes() == again.read_bytes()
    assert {ord(ch) for ch in required_text()} <= font_coverage(out)


def test_unifont_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(UNIFONT_ENV, str(BUNDLED_FONT))
    assert find_unifont() == BUNDLED_FONT
    monkeypatch.setenv(UNIFONT_ENV, str(tmp_path / "nope.otf"))
    with pytest.raises(FontError, match=r"nope\.otf"):
        find_unifont()


def test_unreadable_font_is_a_font_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.otf"
    bad.write_bytes(b"not a font")
    with pytest.raises(FontError):
        BitmapFont([bad])


def test_the_pre_drawn_glyphs_are_the_subsets_own() -> None:
    """Boards draw the bundled glyphs from unifont-subset.bits without FreeType: a stale file
    would show other pixels than the font (run python -m displays.subset_font)."""
    from PIL import ImageFont

    face = ImageFont.truetype(str(BUNDLED_FONT), GLYPH_HEIGHT)
    chars = BUNDLED_CHARS.read_text(encoding="utf-8").rstrip("\n")
    drawn = bundled_glyphs()
    assert list(drawn) == list(chars)
    for ch in chars:
        image = draw_glyph(face, ch)
        assert (drawn[ch].size, drawn[ch].tobytes()) == (image.size, image.tobytes()), ch


def test_default_texts_are_drawn_without_freetype() -> None:
    code = (
        "import sys\n"
        "from displays.fonts import BUNDLED_FONT, BitmapFont\n"
        "BitmapFont([BUNDLED_FONT]).render('请A023号到15号窗口 暂停服务')\n"
        "print('PIL.ImageFont' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
