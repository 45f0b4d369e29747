"""Text in and out of the shell (pure core): splitting a command line, C escapes of keys and
values, and Pegasus's table printer (`src/utils/output_utils.cpp`).

- `split_commands`: commands end at `;` or a newline, words at blanks; `"..."` and `'...'`
  quote (an empty `""` is an empty word, e.g. an empty sort key). Backslash sequences are kept
  as typed, so that `unescape` can turn a data word into bytes afterwards.
- `unescape`: a word as bytes: UTF-8 text with `\\xNN`, `\\n`, `\\r`, `\\t`, `\\0`, `\\\\`,
  `\\"`, `\\'`, `\\ ` and `\\;` escapes.
- `escape`: Pegasus's `c_escape_string`: printable ASCII as is (`"`, `'` and `\\` escaped),
  `\\n`, `\\r`, `\\t`, every other byte `\\xNN`; with `escape_all`, every byte `\\xNN`.
- `TablePrinter`: a `[name]` header, then rows of cells padded to the column width plus two;
  single-column tables print `key<pad>: value`. `-j` prints the same data as JSON.
"""

import json
import time
from collections.abc import Sequence
from typing import Any

_SIMPLE_ESCAPES = {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    ord('"'): '\\"',
    ord("'"): "\\'",
    ord("\\"): "\\\\",
}
_UNESCAPES = {
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "0": b"\x00",
    "\\": b"\\",
    '"': b'"',
    "'": b"'",
    " ": b" ",
    ";": b";",
}
ACCEPTED_ESCAPES = "\\xNN, \\n, \\r, \\t, \\0, \\\\, \\\", \\', \\<space>, \\;"
TABULAR_PAD = 2


class SyntaxProblem(ValueError):
    """A command line that cannot be split into words (an unterminated quote)."""


def split_commands(text: str) -> list[list[str]]:
    """The commands of `text` as lists of words; empty commands are left out."""
    commands: list[list[str]] = []
    words: list[str] = []
    word: list[str] = []
    started = False  # a word is under way (also an empty quoted one)
    quote = ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            word.append(text[i : i + 2])  # kept for unescape
            started = True
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                word.append(c)
        elif c in "\"'":
            quote = c
            started = True
        elif c in " \t\r":
            if started:
                words.append("".join(word))
                word, started = [], False
        elif c in ";\n":
            if started:
                words.append("".join(word))
                word, started = [], False
            if words:
                commands.append(words)
            words = []
        else:
            word.append(c)
            started = True
        i += 1
    if quote:
        raise SyntaxProblem(f"unterminated {quote} quote; close it with another {quote}")
    if started:
        words.append("".join(word))
    if words:
        commands.append(words)
    return commands


def unescape(word: str) -> bytes:
    """A typed word as bytes (UTF-8 plus C escapes); ValueError naming the accepted escapes."""
    if "\\" not in word:
        return word.encode()
    out = bytearray()
    i, n = 0, len(word)
    while i < n:
        c = word[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        nxt = word[i + 1] if i + 1 < n else ""
        if nxt in ("x", "X"):
            digits = word[i + 2 : i + 4]
            if len(digits) != 2 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(f'bad escape in "{word}": \\x needs two hex digits (\\x00..\\xFF)')
            out.append(int(digits, 16))
            i += 4
            continue
        if nxt not in _UNESCAPES:
            shown = "\\" + nxt if nxt else "a trailing \\"
            raise ValueError(f'bad escape {shown} in "{word}"; accepted: {ACCEPTED_ESCAPES}')
        out += _UNESCAPES[nxt]
        i += 2
    return bytes(out)


def escape(data: bytes, escape_all: bool = False) -> str:
    """Bytes as Pegasus's shell prints them (between double quotes)."""
    if escape_all:
        return "".join(f"\\x{b:02X}" for b in data)
    parts = []
    for b in data:
        if b in _SIMPLE_ESCAPES:
            parts.append(_SIMPLE_ESCAPES[b])
        elif 0x20 <= b <= 0x7E:
            parts.append(chr(b))
        else:
            parts.append(f"\\x{b:02X}")
    return "".join(parts)


def quoted(data: bytes, escape_all: bool = False) -> str:
    return '"' + escape(data, escape_all) + '"'


def format_seconds(seconds: int) -> str:
    """Pegasus's `YYYY-MM-DD_hh:mm:ss` (local time), or `-` for 0."""
    if seconds <= 0:
        return "-"
    return time.strftime("%Y-%m-%d_%H:%M:%S", time.localtime(seconds))


def format_ms(ms: int) -> str:
    """Pegasus's `YYYY-MM-DD hh:mm:ss.mmm` (local time)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


class TablePrinter:
    """One table of Pegasus's `table_printer`: multi-column (`columns` then `row`s) or
    single-column (`add`)."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self.single = False

    def columns(self, *names: str) -> "TablePrinter":
        assert not self.rows and not self.single, "columns come first, once"
        self.header = list(names)
        return self

    def row(self, *cells: object) -> None:
        assert self.header and len(cells) == len(self.header), (self.header, cells)
        self.rows.append([_cell(c) for c in cells])

    def add(self, key: str, value: object) -> None:
        assert not self.header, "a table is single-column or multi-column"
        self.single = True
        self.rows.append([key, _cell(value)])

    def tabular(self) -> list[str]:
        matrix = self.rows if self.single else [self.header, *self.rows]
        if not matrix:
            return [f"[{self.name}]"] if self.name else []
        widths = [max(len(r[c]) for r in matrix) for c in range(len(matrix[0]))]
        lines = [f"[{self.name}]"] if self.name else []
        for r in matrix:
            cells = []
            for c, text in enumerate(r):
                shown = (": " if self.single and c > 0 else "") + text
                cells.append(shown.ljust(widths[c] + TABULAR_PAD))
            lines.append("".join(cells).rstrip())
        return lines

    def as_json(self) -> dict[str, Any]:
        if self.single:
            body: dict[str, Any] = {k: v for k, v in self.rows}
        else:
            body = {r[0]: dict(zip(self.header, r, strict=True)) for r in self.rows}
        return {self.name: body} if self.name else body


def render(tables: Sequence[TablePrinter], as_json: bool = False) -> str:
    """Several tables as Pegasus's `multi_table_printer` prints them (each followed by a blank
    line), or one pretty JSON object."""
    if as_json:
        merged: dict[str, Any] = {}
        for t in tables:
            merged.update(t.as_json())
        return json.dumps(merged, indent=4)
    lines: list[str] = []
    for t in tables:
        lines += t.tabular()
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
