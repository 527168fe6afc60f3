"""docs/error-codes.md and the provider-error table agree, row by row and column by column.

The page is read as a reader reads it (a Markdown table between two
markers), not re-rendered, so a hand edit of the page or a change to the
table without regenerating the page both fail here, naming the row.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ratatosk.twilio.provider_errors import (
    BY_CODE,
    PROVIDER_ERRORS,
    MetOn,
    ProviderError,
    Retry,
    markdown_table,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "error-codes.md"
BEGIN = "<!-- begin: provider_errors.markdown_table() -->"
END = "<!-- end: provider_errors.markdown_table() -->"
HEADER = ["code", "kernel code", "met on", "retry", "meaning", "what to do"]


def _read(path: Path) -> str:
    if not path.exists():
        pytest.fail(f"{path} is missing: it is part of the repository, restore it")
    return path.read_text(encoding="utf-8")


def _block() -> str:
    text = _read(DOC)
    assert text.count(BEGIN) == 1
    assert text.count(END) == 1
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def _cells(line: str) -> list[str]:
    assert line.startswith("| ")
    assert line.endswith(" |")
    return [cell.strip() for cell in line[2:-2].split(" | ")]


def _documented() -> dict[int, list[str]]:
    header, rule, *lines = _block().splitlines()
    assert _cells(header) == HEADER
    assert rule == "|" + " --- |" * len(HEADER)
    rows: dict[int, list[str]] = {}
    for line in lines:
        cells = _cells(line)
        assert len(cells) == len(HEADER), line
        found = re.fullmatch(r"(\d+)( \(unconfirmed\))?", cells[0])
        assert found is not None, line
        code = int(found.group(1))
        assert code not in rows, f"{code} is documented twice"
        rows[code] = cells
    return rows


def test_the_page_documents_exactly_the_tables_codes() -> None:
    """No row missing from the page, none the table does not have, in the table's order."""
    assert list(_documented()) == [row.code for row in PROVIDER_ERRORS]


@pytest.mark.parametrize("row", PROVIDER_ERRORS, ids=lambda row: str(row.code))
def test_every_column_of_every_row_agrees(row: ProviderError) -> None:
    """Code (and its unconfirmed mark), kernel code, where met, retry, meaning, remediation."""
    code, kernel, met, retry, meaning, remediation = _documented()[row.code]
    assert code.endswith("(unconfirmed)") is (not row.confirmed)
    assert kernel == f"`{row.kernel_code}`"
    assert {MetOn(place) for place in met.split(", ")} == row.met
    assert Retry(retry) is row.retry
    assert meaning == row.meaning
    assert remediation == row.remediation


def test_the_page_is_the_rendered_table() -> None:
    """Byte for byte what markdown_table() renders, so regenerating changes nothing."""
    assert _block() + "\n" == markdown_table()


def test_the_page_explains_every_retry_class_and_place() -> None:
    """A reader can look up each value the table uses."""
    text = _read(DOC)
    for value in [r.value for r in Retry] + [m.value for m in MetOn]:
        assert f"`{value}`" in text, value


def test_the_unconfirmed_code_is_visible_on_the_page() -> None:
    """63051 is marked on the page, not presented as fact."""
    assert not BY_CODE[63051].confirmed
    assert _documented()[63051][0] == "63051 (unconfirmed)"


def test_the_readme_points_to_the_page_and_explains_the_keys() -> None:
    """Results and error codes links the page and names both keys and every retry class."""
    readme = _read(ROOT / "README.md")
    section = readme.split("### Results and error codes", 1)[1].split("\n## ", 1)[0]
    assert "[docs/error-codes.md](docs/error-codes.md)" in section
    for phrase in ('details["retry"]', 'details["remediation"]', 'data["retry"]'):
        assert phrase in section, phrase
    for value in Retry:
        assert f'`"{value.value}"`' in section, value
