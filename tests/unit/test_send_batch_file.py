"""Reading a ``send-batch`` file and its results file: rows, line numbers, torn lines.

The command itself runs against the emulator in tests/integration/test_send_batch.py;
these pin what needs no server: which line a row is reported on, the codes of
rows that cannot be read, and what a results file cut mid-line becomes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratatosk.cli.batch_file import ResultsFile, Row, read_results, read_rows
from ratatosk.domain.result import ConnectorError
from ratatosk.twilio.outbound import SendConfig
from ratatosk.twilio.schema import TwilioChannelSchemas

CONFIG = SendConfig(default_from="whatsapp:+14155238886")
SCHEMA = TwilioChannelSchemas.TWILIO_WHATSAPP


def _rows(path: Path, text: str) -> list[Row]:
    path.write_text(text, encoding="utf-8")
    rows = read_rows(path, "auto", SCHEMA, CONFIG)
    assert not isinstance(rows, ConnectorError), rows
    return rows


def _codes(rows: list[Row]) -> dict[int, str | None]:
    return {row.line: row.error.code if row.error else None for row in rows}


class TestReadRows:
    def test_a_row_is_reported_on_the_line_it_starts_on(self, tmp_path: Path) -> None:
        """A quoted field over two lines moves the next rows down; blank lines count too."""
        rows = _rows(
            tmp_path / "b.csv",
            'to,text\nwhatsapp:+15550001111,"two\nlines"\n\nnot-a-number,hi\n',
        )
        assert _codes(rows) == {2: None, 5: "INVALID_RECIPIENT"}
        assert [row.message_id for row in rows] == ["b.csv:2", "b.csv:5"]

    def test_json_lines_that_cannot_be_rows_get_their_own_codes(self, tmp_path: Path) -> None:
        """Not JSON, not an object, an unknown key, a number for text: each its line, its code."""
        lines = [
            '{"to": "whatsapp:+15550001111", "text": "hi"}',
            "not json",
            "[1, 2]",
            '{"to": "whatsapp:+15550001111", "txt": "hi"}',
            '{"to": "whatsapp:+15550001111", "text": 5}',
            '{"to": "whatsapp:+15550001111", "template": "t", "variables": ["x"]}',
        ]
        rows = _rows(tmp_path / "b.jsonl", "\n".join(lines) + "\n")
        assert _codes(rows) == {
            1: None,
            2: "MESSAGE_DESERIALIZATION_FAILED",
            3: "MESSAGE_DESERIALIZATION_FAILED",
            4: "INVALID_MESSAGE",
            5: "INVALID_MESSAGE",
            6: "INVALID_MESSAGE",
        }

    @pytest.mark.parametrize(
        ("header", "needle"),
        [
            ("to,txt", "'txt'"),
            ("text,media", "'to'"),
            ("to,id", "none of"),
            ("to,to,text", "repeated"),
        ],
    )
    def test_a_header_that_would_lose_data_refuses_the_file(
        self, tmp_path: Path, header: str, needle: str
    ) -> None:
        """A misspelt, repeated or missing column is one error for the file, not 1,000."""
        path = tmp_path / "b.csv"
        path.write_text(f"{header}\nwhatsapp:+15550001111,hi\n", encoding="utf-8")
        problem = read_rows(path, "csv", SCHEMA, CONFIG)
        assert isinstance(problem, ConnectorError)
        assert problem.code == "INVALID_MESSAGE"
        assert needle in problem.message


class TestResultsFile:
    def test_a_torn_last_line_is_ignored_then_cut_off(self, tmp_path: Path) -> None:
        """A run killed mid-write leaves a partial line: read past, cut off before appending."""
        path = tmp_path / "results.jsonl"
        whole = json.dumps({"line": 2, "id": "a", "sid": "SM" + "0" * 32, "status": "queued"})
        path.write_text(whole + '\n{"line": 3, "id": "b", "si', encoding="utf-8")
        earlier = read_results(path)
        assert not isinstance(earlier, ConnectorError)
        assert dict(earlier.sids) == {"a": "SM" + "0" * 32}
        results = ResultsFile(path)
        row = Row(3, "b")
        results.sent(row, "SM" + "1" * 32, "queued")
        results.close()
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["id"] for line in lines] == ["a", "b"]

    def test_a_line_that_is_not_a_result_is_an_error(self, tmp_path: Path) -> None:
        """A results file from something else is refused rather than half-trusted."""
        path = tmp_path / "results.jsonl"
        path.write_text("hello\n", encoding="utf-8")
        problem = read_results(path)
        assert isinstance(problem, ConnectorError)
        assert problem.code == "MESSAGE_DESERIALIZATION_FAILED"

    def test_unknown_stays_unknown_until_a_sid_settles_it(self, tmp_path: Path) -> None:
        """A later SID settles a row; a failed resend does not (the first may have arrived)."""
        path = tmp_path / "results.jsonl"
        records = [
            {"line": 2, "id": "a", "code": "SEND_OUTCOME_UNKNOWN"},
            {"line": 2, "id": "a", "sid": "SM" + "0" * 32},
            {"line": 3, "id": "b", "code": "RATE_LIMITED"},
            {"line": 3, "id": "b", "code": "SEND_OUTCOME_UNKNOWN"},
            {"line": 4, "id": "c", "code": "SEND_OUTCOME_UNKNOWN"},
            {"line": 4, "id": "c", "code": "RATE_LIMITED"},
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        earlier = read_results(path)
        assert not isinstance(earlier, ConnectorError)
        assert [earlier.unknown(i) for i in "abc"] == [False, True, True]

    def test_a_queued_row_waits_until_a_later_line_holds_its_result(self, tmp_path: Path) -> None:
        """A ticket says a worker has the row; its SID or code, written later, settles it."""
        path = tmp_path / "results.jsonl"
        results = ResultsFile(path)
        for line, message_id in enumerate("abcd", start=2):
            results.queued(Row(line, message_id), f"1-{line}")
        results.sent(Row(2, "a"), "SM" + "0" * 32, "queued")
        results.failed(Row(3, "b"), ConnectorError(code="SEND_OUTCOME_UNKNOWN", message="lost"))
        results.close()
        with path.open("a", encoding="utf-8") as file:  # a sent row queued again stays sent
            file.write(json.dumps({"line": 2, "id": "a", "queued": "1-9"}) + "\n")
        earlier = read_results(path)
        assert not isinstance(earlier, ConnectorError)
        assert dict(earlier.queued) == {"c": "1-4", "d": "1-5"}
        assert [earlier.unknown(i) for i in "abcd"] == [False, True, False, False]
