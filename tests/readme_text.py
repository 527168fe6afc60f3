"""The README read as tests read it: a section by its heading, a section's code blocks.

For the tests that run the README's examples as written (tests/integration).
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def section(heading: str) -> str:
    """The README's text from ``heading`` to the next heading of the same level or above.

    A ``#`` line inside a fenced code block (a comment) is not a heading.
    """
    text = README.read_text(encoding="utf-8")
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n")
    fences = [m.start() for m in re.finditer(r"^```", text, re.M)]
    ends = [
        m.start()
        for m in re.finditer(rf"^#{{1,{level}}} ", text, re.M)
        if sum(f < m.start() for f in fences) % 2 == 0
    ]
    end = min((e for e in ends if e > start), default=len(text))
    return text[start:end]


def blocks(text: str, language: str) -> list[str]:
    """The code blocks of ``text`` fenced as ``language``, in order."""
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def files(text: str) -> dict[str, str]:
    """The Python blocks of ``text`` that open with a ``# name.py`` line, by that name.

    So a recipe of several files is written out as the reader would save it.
    """
    named = {}
    for block in blocks(text, "python"):
        first = block.split("\n", 1)[0]
        if re.fullmatch(r"# [\w/]+\.py", first):
            named[first[2:]] = block
    return named
