"""The Architecture Decision Records in ``adr/`` keep their MADR shape.

Every ``adr/NNNN-*.md`` has front matter with a known status and an ISO date,
a ``# NNNN.`` title matching its file number, and the six sections in order;
numbers are unique and contiguous from 0001; ``adr/README.md`` indexes every
record with its title and status. The checks are plain functions that return
a list of problems, and ``TestTheChecksCanFail`` feeds them broken records to
show that they do.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ADR_DIR = Path(__file__).parents[2] / "adr"
ADR_FILES = sorted(ADR_DIR.glob("[0-9][0-9][0-9][0-9]-*.md"))

STATUSES = frozenset({"proposed", "accepted", "superseded", "deprecated"})
SECTIONS = (
    "Context and Problem Statement",
    "Decision Drivers",
    "Considered Options",
    "Decision Outcome",
    "Consequences",
    "Confirmation",
)
#: MADR's optional closing sections, allowed after the six required ones.
OPTIONAL_SECTIONS = frozenset({"Pros and Cons of the Options", "More Information"})

_FILE_NAME = re.compile(r"(\d{4})-[a-z0-9]+(?:-[a-z0-9]+)*\.md")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INDEX_ROW = re.compile(r"\|\s*\[(\d{4})\]\(([^)\s]+)\)\s*\|\s*(.+?)\s*\|\s*([a-z]+)\s*\|")


def split_front_matter(text: str) -> tuple[dict[str, str], list[str]] | None:
    """The ``key: value`` fields between the opening ``---`` lines, and the lines after."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    except StopIteration:
        return None
    fields: dict[str, str] = {}
    for line in lines[1:end]:
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields, lines[end + 1 :]


def sections(body: Iterable[str]) -> list[tuple[str, list[str]]]:
    """Level-2 headings in order, each with its lines (code fences are not headings)."""
    found: list[tuple[str, list[str]]] = []
    fenced = False
    for line in body:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            found.append((line[3:].strip(), []))
        elif found:
            found[-1][1].append(line)
    return found


def title_of(body: Iterable[str]) -> str | None:
    """The first non-blank line after the front matter."""
    return next((line.strip() for line in body if line.strip()), None)


def first_paragraph(lines: Iterable[str]) -> str:
    """The first block of non-blank lines, joined by spaces."""
    paragraph: list[str] = []
    for line in lines:
        if line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            break
    return " ".join(paragraph)


def check_adr(name: str, text: str) -> list[str]:
    """Every way the record ``name`` with content ``text`` breaks the ADR format."""
    match = _FILE_NAME.fullmatch(name)
    if match is None:
        return [f"{name}: file name is not NNNN-kebab-title.md"]
    number = match.group(1)
    parsed = split_front_matter(text)
    if parsed is None:
        return [f"{name}: no YAML front matter between '---' lines"]
    fields, body = parsed
    problems: list[str] = []
    if fields.get("status") not in STATUSES:
        problems.append(f"{name}: status {fields.get('status')!r} not in {sorted(STATUSES)}")
    date = fields.get("date", "")
    try:
        valid_date = bool(_ISO_DATE.fullmatch(date)) and bool(dt.date.fromisoformat(date))
    except ValueError:
        valid_date = False
    if not valid_date:
        problems.append(f"{name}: date {date!r} is not an ISO date (YYYY-MM-DD)")
    title = title_of(body) or ""
    if not re.fullmatch(rf"# {number}\. \S.*", title):
        problems.append(f"{name}: first line {title!r} is not '# {number}. Title'")
    found = sections(body)
    headings = [heading for heading, _ in found]
    if tuple(headings[: len(SECTIONS)]) != SECTIONS:
        problems.append(f"{name}: sections {headings} are not {list(SECTIONS)} in order")
    extra = [h for h in headings[len(SECTIONS) :] if h not in OPTIONAL_SECTIONS]
    if extra:
        problems.append(f"{name}: unexpected sections {extra}")
    content = dict(found)
    outcome = first_paragraph(content.get("Decision Outcome", []))
    if not (outcome.startswith("Chosen option: ") and ", because " in outcome):
        problems.append(f"{name}: Decision Outcome does not open 'Chosen option: ..., because'")
    bullets = [line.strip() for line in content.get("Consequences", [])]
    for kind in ("Good", "Bad"):
        if not any(re.match(rf"[-*] {kind}\b", line) for line in bullets):
            problems.append(f"{name}: Consequences has no '- {kind}, ...' bullet")
    if not first_paragraph(content.get("Confirmation", [])):
        problems.append(f"{name}: Confirmation is empty")
    return problems


def check_numbers(names: Iterable[str]) -> list[str]:
    """Numbers must be unique and run 0001, 0002 ... without a gap."""
    counts = Counter(int(name[:4]) for name in names)
    problems = [f"number {n:04d} is used {c} times" for n, c in sorted(counts.items()) if c > 1]
    expected = set(range(1, len(counts) + 1))
    if set(counts) != expected:
        gaps = sorted(expected - set(counts))
        problems.append(f"numbers are not contiguous from 0001 (missing {gaps})")
    return problems


def index_entry(text: str) -> tuple[str, str]:
    """(title without its number, status) of one record, as the index must show them."""
    parsed = split_front_matter(text)
    fields, body = parsed if parsed is not None else ({}, text.splitlines())
    title = re.sub(r"^#\s*\d{4}\.\s*", "", title_of(body) or "")
    return title, fields.get("status", "")


def check_index(readme: str, records: Mapping[str, tuple[str, str]]) -> list[str]:
    """``readme`` has one row per record (``name -> (title, status)``) and no other."""
    rows = [m.groups() for m in map(_INDEX_ROW.match, readme.splitlines()) if m]
    problems: list[str] = []
    for number, target, title, status in rows:
        if target not in records:
            problems.append(f"README links {target}, which is not an ADR file")
        elif not target.startswith(number + "-"):
            problems.append(f"README row {number} links {target}")
        elif (title, status) != records[target]:
            problems.append(
                f"README row for {target} says {(title, status)}, the file {records[target]}"
            )
    linked = Counter(target for _, target, _, _ in rows)
    for name in records:
        if linked[name] != 1:
            problems.append(f"README lists {name} {linked[name]} times, not once")
    return problems


# --- the records themselves ---------------------------------------------------------------


def test_there_are_records() -> None:
    """The ADR directory exists and holds at least the first record."""
    assert ADR_DIR.is_dir()
    assert ADR_FILES, f"no NNNN-*.md records in {ADR_DIR}"


@pytest.mark.parametrize("path", ADR_FILES, ids=[p.name for p in ADR_FILES])
def test_record_has_the_madr_shape(path: Path) -> None:
    """Front matter, numbered title and the six sections, as adr/README.md describes."""
    assert check_adr(path.name, path.read_text(encoding="utf-8")) == []


def test_numbers_are_unique_and_contiguous() -> None:
    """0001, 0002 ... with no gap and no number used twice."""
    assert check_numbers(p.name for p in ADR_FILES) == []


def test_readme_indexes_every_record() -> None:
    """adr/README.md has exactly one row per record, with its title and status."""
    readme = (ADR_DIR / "README.md").read_text(encoding="utf-8")
    records = {p.name: index_entry(p.read_text(encoding="utf-8")) for p in ADR_FILES}
    assert check_index(readme, records) == []


# --- the checks can fail ---------------------------------------------------------------------

GOOD = """---
status: accepted
date: 2026-11-27
---

# 0007. Do the right thing

## Context and Problem Statement

Why.

## Decision Drivers

- One.

## Considered Options

1. This.

## Decision Outcome

Chosen option: 1, "this", because it
is right.

## Consequences

- Good, because it works.
- Bad, because it costs.

## Confirmation

`tests/unit/test_adr.py`.
"""


class TestTheChecksCanFail:
    def test_the_sample_passes(self) -> None:
        """The well-formed sample has no problems, so each mutation below is the cause."""
        assert check_adr("0007-do-the-right-thing.md", GOOD) == []

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("status: accepted", "status: approved"),
            ("status: accepted\n", ""),
            ("date: 2026-11-27", "date: 27.11.2026"),
            ("date: 2026-11-27", "date: 2026-02-30"),
            ("---\nstatus", "status"),
            ("# 0007. Do", "# 0008. Do"),
            ("# 0007. Do", "# Do"),
            ("## Decision Drivers\n\n- One.\n\n", ""),
            ("## Confirmation\n\n`tests/unit/test_adr.py`.\n", ""),
            ("## Considered Options", "## Options"),
            ("Chosen option: 1", "We pick 1"),
            (", because it\n", " as it\n"),
            ("- Bad, because it costs.\n", ""),
            ("`tests/unit/test_adr.py`.\n", ""),
            ("## Confirmation", "## Notes\n\n## Confirmation"),
        ],
    )
    def test_a_broken_record_is_reported(self, old: str, new: str) -> None:
        """Each single defect yields at least one problem."""
        assert old in GOOD
        assert check_adr("0007-do-the-right-thing.md", GOOD.replace(old, new, 1)) != []

    def test_sections_out_of_order_are_reported(self) -> None:
        """Swapping two sections breaks the required order."""
        drivers = "## Decision Drivers\n\n- One.\n\n"
        options = "## Considered Options\n\n1. This.\n\n"
        swapped = GOOD.replace(drivers + options, options + drivers)
        assert swapped != GOOD
        assert check_adr("0007-do-the-right-thing.md", swapped) != []

    def test_a_heading_inside_a_code_fence_is_not_a_section(self) -> None:
        """A fenced example of a heading neither adds nor breaks a section."""
        fenced = GOOD.replace("Why.\n", "Why.\n\n```\n## Not a section\n```\n")
        assert check_adr("0007-do-the-right-thing.md", fenced) == []

    def test_optional_madr_sections_may_follow(self) -> None:
        """MADR's optional closing sections are allowed after Confirmation."""
        longer = GOOD + "\n## Pros and Cons of the Options\n\nSome.\n"
        assert check_adr("0007-do-the-right-thing.md", longer) == []

    @pytest.mark.parametrize("name", ["7-do.md", "0007_do.md", "0007-Do-Right.md"])
    def test_a_badly_named_file_is_reported(self, name: str) -> None:
        """File names are four digits, a dash and a kebab-case title."""
        assert check_adr(name, GOOD) != []

    @pytest.mark.parametrize(
        "names",
        [
            ["0001-a.md", "0003-c.md"],
            ["0002-b.md"],
            ["0001-a.md", "0001-b.md", "0002-c.md"],
        ],
    )
    def test_gaps_and_duplicates_are_reported(self, names: list[str]) -> None:
        """A missing number, a late start or a reused number is a problem."""
        assert check_numbers(names) != []

    def test_contiguous_numbers_pass(self) -> None:
        """0001..0003 in any order is fine."""
        assert check_numbers(["0002-b.md", "0001-a.md", "0003-c.md"]) == []

    def test_the_index_must_match_the_records(self) -> None:
        """A missing, doubled, stale or mistitled row is a problem."""
        records = {"0001-a.md": ("A", "accepted"), "0002-b.md": ("B", "proposed")}
        row_a = "| [0001](0001-a.md) | A | accepted |"
        row_b = "| [0002](0002-b.md) | B | proposed |"
        assert check_index(f"{row_a}\n{row_b}\n", records) == []
        assert check_index(f"{row_a}\n", records) != []
        assert check_index(f"{row_a}\n{row_b}\n{row_b}\n", records) != []
        assert check_index(f"{row_a}\n{row_b.replace('proposed', 'accepted')}\n", records) != []
        assert check_index(f"{row_a.replace('| A |', '| Z |')}\n{row_b}\n", records) != []
        assert check_index(f"{row_a}\n{row_b}\n| [0003](0003-c.md) | C | accepted |\n", records)
