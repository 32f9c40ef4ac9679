"""Which line of a hall file each key path was written on, for error messages.

``tomllib`` keeps no positions, and a field engineer fixing ``agents[13].site`` at a Pi's
console would otherwise count ``[[agents]]`` headers in a 1,000-line file by hand. This
reads the lines the way the file is laid out in practice (headers, ``key = value`` lines,
inline tables on one line); a path it cannot place gets its nearest enclosing table's line,
or none, never a wrong guess of a later line.
"""

from __future__ import annotations

import re

__all__ = ["Loc", "key_lines", "line_of"]

Loc = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*(\]\]?)\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")
_INLINE_KEY = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")


def _name(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return token[1:-1]
    return token


def key_lines(text: str) -> dict[Loc, int]:
    """1-based line of every table, array entry and key the file writes."""
    lines: dict[Loc, int] = {}
    last: dict[Loc, int] = {}  # an array of tables (resolved path) -> its latest index
    table: Loc = ()
    in_string = False
    array: Loc | None = None  # a key whose array of inline tables runs over lines
    entries = depth = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if in_string:  # inside a multi-line string: nothing here is a key
            if raw.count('"""') % 2 or raw.count("'''") % 2:
                in_string = False
            continue
        if array is not None:
            for start in _entries(raw, depth):
                lines.setdefault((*array, entries), number)
                for at in _inline_keys(raw, start, (*array, entries)):
                    lines.setdefault(at, number)
                entries += 1
            depth += _depth_change(raw)
            if depth <= 0:
                array = None
            continue
        header = _HEADER.match(raw)
        if header and (len(header.group(1)) == len(header.group(3))):
            parts = [_name(p) for p in header.group(2).split(".")]
            resolved: list[str | int] = []
            for part in parts[:-1]:
                resolved.append(part)
                if tuple(resolved) in last:
                    resolved.append(last[tuple(resolved)])
            resolved.append(parts[-1])
            if header.group(1) == "[[":
                tables = tuple(resolved)
                lines.setdefault(tables, number)
                last[tables] = last.get(tables, -1) + 1
                resolved.append(last[tables])
            table = tuple(resolved)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(raw)
        if key is None:
            continue
        at = (*table, _name(key.group(1)))
        lines.setdefault(at, number)
        rest = raw[key.end() :]
        value = rest.split("#", 1)[0].strip()
        if value.startswith("{"):
            for inner in _inline_keys(rest, rest.index("{"), at):
                lines.setdefault(inner, number)
        elif value.startswith("[") and _depth_change(value) > 0:
            array, entries, depth = at, 0, _depth_change(value)
        if rest.count('"""') % 2 or rest.count("'''") % 2:
            in_string = True
    return lines


def _scan(raw: str, start: int = 0) -> list[tuple[int, str]]:
    """The brackets, braces and commas of a line from ``start``, outside strings and
    comments, with their positions."""
    out: list[tuple[int, str]] = []
    quote = ""
    i = start
    while i < len(raw):
        ch = raw[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[]{},":
            out.append((i, ch))
        i += 1
    return out


def _inline_keys(raw: str, start: int, base: Loc) -> list[Loc]:
    """The key paths of the inline table opening at ``start``, nested tables' included:
    a key follows the "{" or a "," of the table it is in."""
    out: list[Loc] = []
    stack: list[Loc | None] = []  # the open tables' paths; None: an array
    key = base
    for pos, ch in _scan(raw, start):
        if ch == "{":
            stack.append(key if stack else base)
        elif ch == "[":
            stack.append(None)
        elif ch in "}]":
            if stack:
                stack.pop()
            if not stack:
                break
            continue
        top = stack[-1] if stack else None
        if top is not None:
            found = _INLINE_KEY.match(raw, pos + 1)
            if found:
                key = (*top, _name(found.group(1)))
                out.append(key)
    return out


def _depth_change(raw: str) -> int:
    return sum(1 if ch == "[" else -1 if ch == "]" else 0 for _, ch in _scan(raw))


def _entries(raw: str, depth: int) -> list[int]:
    """Where inline tables begin directly in the array (at ``depth`` 1) on this line."""
    starts, braces = [], 0
    for i, ch in _scan(raw):
        if ch == "{":
            if braces == 0 and depth == 1:
                starts.append(i)
            braces += 1
        elif ch == "}":
            braces -= 1
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
    return starts


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of the nearest enclosing path the file writes."""
    for end in range(len(loc), 0, -1):
        found = lines.get(tuple(loc[:end]))
        if found is not None:
            return found
    return None
