"""Fuzz of ``hallq config check``: mutated hall files through what the command runs (load
the file, render the summary), and a few through the installed command itself.

A technician edits these files by hand on site. Whatever they write, the command must say
what is wrong and where -- the file, and a line or a key path in it -- and never show a
traceback; an invalid file exits non-zero.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from rich.console import Console

from hallq.config import HallConfig, load_config
from hallq.errors import ConfigError
from hallqctl.config_summary import render_summary

from .fuzzing import TIMEOUT, count, report, rng
from .halls import small_hall_text

pytestmark = TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
SEEDS = {
    "liwan": (ROOT / "examples" / "liwan.toml").read_text(encoding="utf-8"),
    "small": small_hall_text("mqtt://127.0.0.1:1", "/tmp/hallq-fuzz-state"),
}
KEY_LINE = re.compile(r"^(\s*)([A-Za-z0-9_\-]+)(\s*=\s*)(.+)$")
ODD_VALUES = [
    '"x"',
    '""',
    "-1",
    "0",
    "99999",
    "9223372036854775807",
    "1.5",
    "-0.0",
    "nan",
    "inf",
    "true",
    "false",
    "[]",
    '[1, "a"]',
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "2026-13-45",
    '"25:99"',
    '"\\u0000"',
    '"a\\nb"',
    '"\\u001b[2J"',
    '"' + "长" * 300 + '"',
    '"../../../../etc/passwd"',
    '"/dev/null"',
    '"mqtt://"',
    '"http://x"',
    '"mqtts://[::1"',
    '"#"',
    '"+/+"',
    '"A B"',
    "'literal'",
    '"""multi\nline"""',
    "[[1, 2], [3]]",
    '["08:00", "07:00"]',
    '[["18:00", "08:00"]]',
    "0x10",
    "1e400",
]
# After the file, a problem names a line ("line 3, column 5: ..."), a byte offset, or a key
# path ("windows[2].skills (window 3): ...", "(top level): ...").
WHERE = re.compile(
    r"^(line \d+, column \d+: |not UTF-8 text \(bad byte at offset \d+\)"
    r"|\(top level\)[ :])"
)
SEGMENT = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")'
KEY_PATH = re.compile(rf"^({SEGMENT})(?:\.{SEGMENT}|\[\d+\])*(?: \(|: )")


def mutate(r: random.Random, text: str) -> tuple[str | bytes, str]:
    lines = text.split("\n")
    kind = r.randrange(12)
    i = r.randrange(len(lines))
    keyed = [j for j, line in enumerate(lines) if KEY_LINE.match(line)]
    headers = [j for j, line in enumerate(lines) if line.startswith("[")]
    if not text:
        return text, "empty"
    if (kind <= 3 and not keyed) or (kind == 7 and not headers):
        kind = 9  # an earlier edit left nothing of that kind
    if kind <= 2:  # a value of another kind, or out of range
        j = r.choice(keyed)
        mm = KEY_LINE.match(lines[j])
        assert mm is not None
        lines[j] = f"{mm[1]}{mm[2]}{mm[3]}{r.choice(ODD_VALUES)}"
        return "\n".join(lines), "value"
    if kind == 3:  # a key misspelt
        j = r.choice(keyed)
        mm = KEY_LINE.match(lines[j])
        assert mm is not None
        key = mm[2]
        key = r.choice([key + "s", key[:-1], key.upper(), key.replace("_", "-"), "x" + key])
        lines[j] = f"{mm[1]}{key}{mm[3]}{mm[4]}"
        return "\n".join(lines), "key"
    if kind == 4:  # a line lost
        del lines[i]
        return "\n".join(lines), "deleted"
    if kind == 5:  # a line twice (a pasted block)
        lines.insert(i, lines[i])
        return "\n".join(lines), "duplicated"
    if kind == 6:  # two lines swapped
        j = r.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines), "swapped"
    if kind == 7:  # a table header lost or misspelt
        j = r.choice(headers)
        lines[j] = r.choice(
            [
                "",
                lines[j].replace("[", "", 1),
                lines[j].rstrip("]") + "s]",
                "[[agents.device]]",
                "[hall]",
                "[[windows]]",
            ]
        )
        return "\n".join(lines), "header"
    if kind == 8:  # cut short (a copy that did not finish)
        return text[: r.randrange(len(text))], "truncated"
    if kind == 9:  # characters typed anywhere
        at = r.randrange(len(text))
        junk = "".join(r.choice("=[]{}\"'#,.\n\t \\xé0") for _ in range(r.randrange(1, 6)))
        return text[:at] + junk + text[at:], "typed"
    if kind == 10:  # bytes that are not text
        data = bytearray(text.encode())
        at = r.randrange(len(data))
        data[at:at] = r.choice([b"\xff", b"\x00", b"\xc3\x28", b"\xef\xbb\xbf", b"\x1b"])
        return bytes(data), "bytes"
    # several edits at once
    out: str | bytes = text
    for _ in range(r.randrange(2, 5)):
        out, _ = mutate(r, out if isinstance(out, str) else out.decode(errors="replace"))
    return out, "several"


def check_error(exc: ConfigError, path: Path, context: str) -> None:
    """The file first; then for each problem a line, or a key path that starts at a table
    the hall file has or may have."""
    try:
        top = set(tomllib.loads(path.read_bytes().decode("utf-8-sig")))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        top = set()
    message = str(exc)
    assert message.startswith(f"{path}: invalid hall configuration"), context
    assert exc.problems, context
    for problem in exc.problems:
        if WHERE.match(problem):
            continue
        key = KEY_PATH.match(problem)
        assert key is not None, f"{problem!r} names no line or key: {context}"
        first = json.loads(key[1]) if key[1].startswith('"') else key[1]
        assert first in {*HallConfig.model_fields, *top}, (problem, context)
        assert "Traceback" not in problem, context


def test_fuzz_config_check(tmp_path: Path) -> None:
    r = rng("config")
    n = count(300, 10_000)
    path = tmp_path / "hall.toml"
    valid = invalid = 0
    kinds: dict[str, int] = {}
    with report("config-check", {"files": n}) as figures:
        for i in range(n):
            name = "liwan" if i % 4 == 0 else "small"  # the big one costs 5x as much
            mutant, how = mutate(r, SEEDS[name])
            data = mutant.encode() if isinstance(mutant, str) else mutant
            path.write_bytes(data)
            context = f"#{i} {how} of {name}"
            try:
                cfg = load_config(path, environ={})
            except ConfigError as exc:
                check_error(exc, path, context)
                invalid += 1
                kinds[how] = kinds.get(how, 0) + 1
                continue
            # a file that loads is summarised, the other half of the command
            assert isinstance(cfg, HallConfig)
            Console(file=io.StringIO(), width=120).print(render_summary(cfg))
            valid += 1
        figures.update(valid=valid, invalid=invalid, invalid_by_mutation=kinds)
    assert invalid > n // 2


def test_fuzz_config_check_command(tmp_path: Path) -> None:
    """The installed command on a few dozen of the same kind of files: exit status and
    output, with no traceback."""
    r = rng("config-cli")
    n = count(16, 48)
    files = []
    for i in range(n):
        mutant, how = mutate(r, SEEDS["small"] if i % 2 else SEEDS["liwan"])
        path = tmp_path / f"hall-{i}.toml"
        path.write_bytes(mutant.encode() if isinstance(mutant, str) else mutant)
        files.append((path, how))
    script = (
        "import sys\nfrom hallqctl.cli import main\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        main(['config', 'check', path], standalone_mode=False)\n"
        "        code = 0\n"
        "    except SystemExit as exc:\n"
        "        code = exc.code\n"
        "    print(f'@@exit {code} {path}', file=sys.stderr, flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HALLQ_")}
    invalid = 0
    with report("config-check-cli", {"files": n}) as figures:
        # one real `hallq config check` per file would spend the CI minute starting Python;
        # the first files go through the installed console script, the rest through its
        # main() in one process, each with its own exit status
        for path, how in files[:4]:
            done = subprocess.run(
                [str(Path(sys.executable).parent / "hallq"), "config", "check", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
            assert "Traceback" not in done.stderr + done.stdout, (how, done.stderr)
            expect_invalid = _invalid(path)
            assert (done.returncode != 0) == expect_invalid, (how, done.returncode)
            if expect_invalid:
                assert done.stderr.startswith(f"{path}: invalid hall configuration"), done.stderr
            invalid += expect_invalid
        done = subprocess.run(
            [sys.executable, "-c", script, *(str(p) for p, _ in files[4:])],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
        exits = re.findall(r"@@exit (\S+) (\S+)", done.stderr)
        assert len(exits) == len(files) - 4, done.stderr[-3000:]
        for code, name in exits:
            expect_invalid = _invalid(Path(name))
            assert (code not in ("0", "None")) == expect_invalid, (name, code)
            invalid += expect_invalid
        figures["invalid"] = invalid
    assert invalid > 0


def _invalid(path: Path) -> bool:
    try:
        load_config(path, environ={})
    except ConfigError:
        return True
    return False
