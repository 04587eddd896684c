"""Markdown (the subset this repository writes) to reStructuredText, for the site's pages.

``docs/benchmarks.rst`` is ``benchmarks/README.md`` converted by this script (one source: the
benchmarks' own README); ``tests/test_docs.py`` checks that the page is up to date. Refresh it
with::

    python docs/md_to_rst.py benchmarks/README.md docs/benchmarks.rst

The subset: ATX headings, fenced code, pipe tables, bullet lists (nested by two spaces),
images, links, inline code, bold and italics, HTML comments (dropped). A link to a file of the
repository (a relative path) becomes that path as literal text: the site holds no such file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

UNDERLINES = '=-~^"'
CODE = re.compile(r"(`+)(.+?)\1", flags=re.S)
LINK = re.compile(r"(!?)\[([^\]]+)\]\(([^)\s]+)\)")
EMPHASIS = re.compile(r"(\*\*|\*)(?=\S)(.+?)(?<=\S)\1", flags=re.S)
HELD = re.compile(r"\x00(\d+)\x00")
WORD = re.compile(r"\w")


def _guard(text: str, start: int, end: int, piece: str) -> str:
    """``piece`` (inline markup) with escaped spaces where a word touches it (rst needs them)."""
    before = "\\ " if start > 0 and WORD.match(text[start - 1]) else ""
    after = "\\ " if end < len(text) and WORD.match(text[end]) else ""
    return before + piece + after


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")


class _Inline:
    """One paragraph's inline markup. rst nests none of it, so links and code spans are held
    out as placeholders first; emphasis is found around them, and code inside emphasis becomes
    plain text of the emphasis."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.held: list[tuple[str, str]] = []  # (rst, plain text) of each placeholder

    def _hold(self, rst: str, plain: str) -> str:
        self.held.append((rst, plain))
        return f"\x00{len(self.held) - 1}\x00"

    def _link(self, m: re.Match) -> str:
        label, url = m.group(2), m.group(3)
        text = label.replace("`", "")
        if url.startswith(("http://", "https://")):
            return self._hold(f"`{_escape(text)} <{url}>`__", text)
        if label.strip("`") == url:  # a file of the repository: its path
            return self._hold(f"``{self.base}{url}``", self.base + url)
        return self._hold(f"{_escape(text)} (``{self.base}{url}``)", f"{text} ({url})")

    def _code(self, m: re.Match) -> str:
        code = m.group(2).strip()  # a line break inside stays: rst reads it as a space
        return self._hold(f"``{code}``", code)

    def _render(self, text: str, plain: bool) -> str:
        """``text`` with its placeholders put back, guarded (or as plain text in emphasis)."""
        out, pos = [], 0
        for m in HELD.finditer(text):
            out.append(_escape(text[pos : m.start()]) if not plain else text[pos : m.start()])
            rst, raw = self.held[int(m.group(1))]
            out.append(raw if plain else _guard(text, m.start(), m.end(), rst))
            pos = m.end()
        out.append(_escape(text[pos:]) if not plain else text[pos:])
        return "".join(out)

    def convert(self, text: str) -> str:
        text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
        text = CODE.sub(self._code, LINK.sub(self._link, text))
        out, pos = [], 0
        for m in EMPHASIS.finditer(text):
            out.append(self._render(text[pos : m.start()], plain=False))
            inner = _escape(self._render(m.group(2), plain=True))
            out.append(_guard(text, m.start(), m.end(), f"{m.group(1)}{inner}{m.group(1)}"))
            pos = m.end()
        out.append(self._render(text[pos:], plain=False))
        return "".join(out)


def inline(text: str, base: str = "") -> str:
    """The inline markup of one paragraph (several lines allowed).

    ``base`` is the folder of the Markdown file in the repository: relative links are written
    as ``base + link``, a path from the repository's root.
    """
    return _Inline(base).convert(text)


def _cells(row: str, base: str) -> list[str]:
    return [inline(c.strip(), base) for c in row.strip().strip("|").split("|")]


def _table(rows: list[str], base: str) -> list[str]:
    header, body = _cells(rows[0], base), [_cells(r, base) for r in rows[2:]]
    out = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [header, *body]:
        for i, cell in enumerate(cells):
            out.append((("   * - " if i == 0 else "     - ") + cell).rstrip())
    return [*out, ""]


def _code(lang: str, body: list[str]) -> list[str]:
    return [f".. code-block:: {lang or 'text'}", "", *("   " + b if b else "" for b in body), ""]


def _heading(line: str, top: int, base: str) -> list[str]:
    hashes, title = line.split(" ", 1)
    text = inline(title.strip(), base)
    return [text, UNDERLINES[len(hashes) - top] * len(text), ""]


def _block_end(lines: list[str], i: int) -> int:
    """Where the paragraph or list item starting at line ``i`` ends."""
    end = i + 1
    while end < len(lines):
        line = lines[end]
        special = line.startswith(("```", "|", "#", "![")) or re.match(r" *- ", line)
        if not line.strip() or special:
            break
        end += 1
    return end


def _text_block(block: list[str], base: str) -> list[str]:
    """A paragraph or a list item, its inline markup read across its lines."""
    indents = [line[: len(line) - len(line.lstrip())] for line in block]
    converted = inline("\n".join(line.lstrip() for line in block), base).split("\n")
    return [indent + line for indent, line in zip(indents, converted)]


def convert(markdown: str, base: str = "") -> str:
    """The reStructuredText of ``markdown``, relative links read from the folder ``base``."""
    lines = markdown.splitlines()
    outside_code = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M).splitlines()
    top = min(len(h.split(" ")[0]) for h in outside_code if re.match(r"#+ ", h))
    out: list[str] = []
    i, depth = 0, 0
    while i < len(lines):
        line, end = lines[i], i + 1
        item = re.match(r"( *)- ", line)
        if line.startswith("```"):
            end = lines.index("```", i + 1) + 1
            out += _code(line[3:].strip(), lines[i + 1 : end - 1])
        elif line.startswith("|") and end < len(lines) and lines[end].startswith("|-"):
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            out += _table(lines[i:end], base)
        elif re.match(r"#+ ", line):
            out += _heading(line, top, base)
        elif m := re.match(r"!\[([^\]]*)\]\(([^)]+)\)\s*$", line):
            out += [f".. image:: {m.group(2)}", f"   :alt: {m.group(1)}", ""]
        elif not line.strip():
            out.append("")
        else:
            indent = len(item.group(1)) // 2 if item else depth
            if item and indent != depth and out and out[-1] != "":
                out.append("")  # rst: a nested list is a block of its own
            depth = indent if item else depth
            end = _block_end(lines, i)
            out += _text_block(lines[i:end], base)
        if not line.strip() or not (item or depth):
            depth = 0 if not line.strip() else depth
        i = end
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    folder = source.parent.as_posix()
    Path(target).write_text(convert(source.read_text(), "" if folder == "." else folder + "/"))
