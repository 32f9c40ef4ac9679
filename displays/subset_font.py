"""Regenerate the bundled Unifont subset from the system Unifont.

The subset exists so a board without the Debian package ``fonts-unifont`` still draws
every string the default layouts and the hall's own names need. Run this after adding a
string to ``displays/texts.py`` or a name to the hall file, and commit all three outputs
(the font, its character list and its pre-drawn glyphs):

    python -m displays.subset_font                      # examples/liwan.toml + texts.py
    python -m displays.subset_font --config hall.toml   # add another hall's names

Needs the full Unifont (``apt-get install fonts-unifont`` or ``$HALLQ_UNIFONT``).
"""

from __future__ import annotations

import argparse
import logging
import string
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from displays.errors import FontError
from displays.fonts import (
    BUNDLED_CHARS,
    BUNDLED_FONT,
    GLYPH_HEIGHT,
    characters,
    cmap_coverage,
    draw_glyph,
    find_unifont,
    glyph_bits,
)
from displays.texts import fixed_text

__all__ = ["DEFAULT_CONFIGS", "build_subset", "hall_names", "predrawn", "required_text"]

DEFAULT_CONFIGS = (Path(__file__).resolve().parents[1] / "examples" / "liwan.toml",)
CHARS_FILE = BUNDLED_CHARS
SUBSET_FAMILY = "Unifont hallq subset"
# copyright, family, style, unique id, full name, version, PostScript name, vendor URL,
# licence description, licence URL: the licence travels with the subset.
_NAME_IDS = [0, 1, 2, 3, 4, 5, 6, 11, 13, 14]


def hall_names(config: Path) -> list[str]:
    """Names a board may show: the hall's, its zones', services' and windows'."""
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FontError(f"cannot read names from {config}: {exc}") from exc
    names: list[str] = []
    hall = data.get("hall", {})
    if isinstance(hall.get("name"), str):
        names.append(hall["name"])
    for table in ("zones", "services", "windows"):
        for item in data.get(table, []):
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                names.append(item["name"])
    return names


def required_text(configs: Iterable[Path] = DEFAULT_CONFIGS) -> str:
    """Every character the subset must have, sorted: printable ASCII, layouts, hall names."""
    texts = [string.printable.strip() + " ", fixed_text()]
    for config in configs:
        texts.extend(hall_names(config))
    return characters(texts)


def build_subset(source: Path, output: Path, text: str) -> None:
    from fontTools import subset

    options = subset.Options()
    options.layout_features = []  # glyphs are drawn one by one: no shaping tables needed
    options.name_IDs = _NAME_IDS
    options.notdef_outline = True
    options.recalc_timestamp = False  # same input, same bytes
    quiet = logging.getLogger("fontTools")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        font = subset.load_font(str(source), options)
        try:
            subsetter = subset.Subsetter(options)
            subsetter.populate(text=text)
            subsetter.subset(font)
            _rename(font)
            output.parent.mkdir(parents=True, exist_ok=True)
            subset.save_font(font, str(output), options)
        finally:
            font.close()
    finally:
        quiet.setLevel(level)


def predrawn(font: Path, chars: str) -> bytes:
    """``chars`` of ``font`` as FreeType draws them, for ``fonts.bundled_glyphs``."""
    from PIL import ImageFont

    face = ImageFont.truetype(str(font), GLYPH_HEIGHT)
    return b"".join(glyph_bits(draw_glyph(face, ch)) for ch in chars)


def _rename(font: Any) -> None:
    """A subset is a modified version: it gets its own name (OFL-1.1 section 3 courtesy)."""
    name = font["name"]
    version = name.getDebugName(5) or ""
    for record in list(name.names):
        if record.nameID in (1, 4):
            name.setName(
                SUBSET_FAMILY, record.nameID, record.platformID, record.platEncID, record.langID
            )
        elif record.nameID in (3, 6):
            ps = SUBSET_FAMILY.replace(" ", "-") + ("" if record.nameID == 6 else f";{version}")
            name.setName(ps, record.nameID, record.platformID, record.platEncID, record.langID)
    if "CFF " in font:
        cff = font["CFF "].cff
        cff.fontNames = [SUBSET_FAMILY.replace(" ", "-")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="full Unifont (default: the system one)")
    parser.add_argument("--output", type=Path, default=BUNDLED_FONT)
    parser.add_argument(
        "--config", type=Path, action="append", help="hall TOML whose names to include"
    )
    args = parser.parse_args(argv)
    source = args.source or find_unifont()
    if source is None:
        print("no Unifont found: apt-get install fonts-unifont, or pass --source", file=sys.stderr)
        return 2
    configs = [*DEFAULT_CONFIGS, *(args.config or [])]
    text = required_text(c for c in configs if c.is_file())
    build_subset(source, args.output, text)
    # the subset's own map, which fonts.font_coverage reads instead of parsing the font
    mapped = "".join(sorted(map(chr, cmap_coverage(args.output))))
    args.output.with_suffix(".txt").write_text(mapped + "\n", encoding="utf-8")
    args.output.with_suffix(".bits").write_bytes(predrawn(args.output, mapped))
    print(
        f"{args.output}: {len(text)} characters from {source}, {args.output.stat().st_size} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
