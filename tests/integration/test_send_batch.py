"""``ratatosk send-batch`` as a user runs it: real CLI processes, the emulator over HTTP.

Each case writes a file of rows, runs ``python -m ratatosk send-batch`` with
credentials in the environment, and checks what the emulator stored (one
message per good row, by recipient: every row has its own), what the command
printed, and the results file a rerun reads. Interrupted runs get a real
SIGINT; the assertions are about outcomes, never about how long anything took.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ratatosk.testing import BackgroundEmulator
from readme_text import blocks, section

SENDER = "whatsapp:+14155238886"
ROWS = 1000
FAST = ["--concurrency", "16", "--rate", "5000"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[BackgroundEmulator]:
    with BackgroundEmulator(step_delay=5.0) as running:
        yield running


def _environ(emulator: BackgroundEmulator) -> dict[str, str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "RATATOSK_", "REDIS"))
    }
    return environ | {
        "TWILIO_ACCOUNT_SID": emulator.account_sid,
        "TWILIO_AUTH_TOKEN": emulator.auth_token,
        "TWILIO_WHATSAPP_FROM": SENDER,
        "TWILIO_API_BASE_URL": emulator.url,
        "TWILIO_CONTENT_API_BASE_URL": emulator.url,
    }


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ratatosk", "--json", "send-batch", *args]


def send_batch(emulator: BackgroundEmulator, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run the command to its end: exit code, its JSON events, its stderr."""
    done = subprocess.run(
        _command(*args),
        env=_environ(emulator),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert emulator.auth_token not in done.stdout + done.stderr
    return done.returncode, _events(done.stdout), done.stderr


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    [summary] = [e for e in events if e["event"] == "summary"]
    return summary


def _by_line(events: list[dict[str, Any]], kind: str) -> dict[int, str]:
    return {e["line"]: e["error"]["code"] for e in events if e["event"] == kind}


def _results(path: Path) -> list[dict[str, Any]]:
    """Every line of a results file, each of which must be one whole JSON object."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _recipient(block: int, i: int) -> str:
    return f"whatsapp:+1555{block}{i:06d}"


def _stored(emulator: BackgroundEmulator) -> Counter[str]:
    """How many messages the emulator holds per recipient."""
    return emulator.control(lambda model: Counter(m.to for m in model.outbound))


#: A bad row of each kind, with the code it must be reported with.
BAD: list[tuple[dict[str, str], str]] = [
    ({"to": "bad-number", "text": "hello"}, "INVALID_RECIPIENT"),
    ({"to": "whatsapp:+1"}, "INVALID_MESSAGE"),  # nothing to send
    ({"text": "x" * 1601}, "INVALID_MESSAGE"),  # over Twilio's 1,600 characters
    ({"text": "hello", "caption": "a caption off media"}, "INVALID_MESSAGE"),
    ({"to": "whatsapp:15550001111", "text": "no plus"}, "INVALID_WHATSAPP_NUMBER"),
    ({"template": "order_confirmed", "text": "both"}, "INVALID_MESSAGE"),
    ({"text": "hi", "var.order_id": "ORD-1"}, "INVALID_MESSAGE"),  # variables off a template
    ({"media": "not-a-url"}, "INVALID_MESSAGE"),
    ({"id": "order-0", "text": "reuses row 0's id"}, "MESSAGE_ID_REUSED"),
]


def _write_csv(path: Path, block: int) -> tuple[dict[int, str], dict[int, str]]:
    """1,000 rows, one in ten bad: (good line -> recipient, bad line -> expected code).

    Text rows hold a newline (a quoted CSV field over two lines), so a row's
    line is where it starts in the file, not its index plus one.
    """
    columns = ["id", "to", "text", "media", "caption", "template", "var.order_id",
               "var.delivery_date"]  # fmt: skip
    bad_rows: dict[int, str] = {}
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for i in range(ROWS):
            row: dict[str, str] = {"to": _recipient(block, i)}
            if i % 10 == 9:
                fields, code = BAD[(i // 10) % len(BAD)]
                row |= fields
                bad_rows[i] = code
            elif i % 10 == 8:
                row |= {"template": "order_confirmed", "var.order_id": f"ORD-{i}",
                        "var.delivery_date": "2026-05-15"}  # fmt: skip
            elif i % 10 == 7:
                row |= {"media": f"https://example.com/{i}.jpg", "caption": f"photo {i}"}
            else:
                row |= {"text": f"Hello row {i},\nsee you"}
            if i == 0:
                row["id"] = "order-0"
            writer.writerow(row)
    lines = _start_lines(path)
    good = {lines[i]: _recipient(block, i) for i in range(ROWS) if i not in bad_rows}
    return good, {lines[i]: code for i, code in bad_rows.items()}


def _start_lines(path: Path) -> list[int]:
    """The line each data row starts on, as an editor numbers them."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        starts, start = [], 1
        for _ in reader:
            starts.append(start)
            start = reader.line_num + 1
    return starts[1:]


def _write_jsonl(path: Path, block: int, count: int = ROWS) -> dict[int, str]:
    """``count`` good rows (text, and templates with a ``variables`` object): line -> recipient."""
    good: dict[int, str] = {}
    with path.open("w", encoding="utf-8") as file:
        for i in range(count):
            row: dict[str, object] = {"to": _recipient(block, i)}
            if i % 4 == 3:
                variables = {"order_id": f"ORD-{i}", "delivery_date": "2026-05-15"}
                row |= {"template": "order_confirmed", "variables": variables}
            else:
                row["text"] = f"Hello row {i}"
            file.write(json.dumps(row) + "\n")
            good[i + 1] = _recipient(block, i)
    return good


def _wait_for_lines(path: Path, count: int, process: subprocess.Popen[str]) -> None:
    """Until the results file has ``count`` lines (the run is under way)."""
    deadline = time.monotonic() + 60
    while not (path.exists() and path.read_text(encoding="utf-8").count("\n") >= count):
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.02)


def _sids(results: list[dict[str, Any]]) -> dict[int, str]:
    return {r["line"]: r["sid"] for r in results if "sid" in r}


class TestSendBatch:
    def test_good_rows_sent_once_bad_rows_reported_and_a_rerun_sends_nothing(
        self, emulator: BackgroundEmulator, tmp_path: Path
    ) -> None:
        """900 good rows are stored once each; 100 bad ones are reported by line and code."""
        rows = tmp_path / "customers.csv"
        good, bad = _write_csv(rows, block=1)
        code, events, stderr = send_batch(emulator, str(rows), *FAST)
        assert code == 1  # some rows were bad
        assert _by_line(events, "invalid") == bad
        summary = _summary(events)
        assert (summary["sent"], summary["invalid"], summary["failed"]) == (900, 100, 0)
        assert "progress: 900/900" in stderr  # plain lines: stderr is no terminal
        stored = _stored(emulator)
        assert [stored[to] for to in good.values()] == [1] * len(good)
        assert sum(n for to, n in stored.items() if to.startswith("whatsapp:+15551")) == 900
        results = _results(rows.with_name("customers.csv.results.jsonl"))
        assert set(_sids(results)) == set(good)
        assert {r["line"]: r["code"] for r in results if "code" in r} == bad
        assert {r["id"] for r in results if r["line"] == 2} == {"order-0"}
        assert {r["id"] for r in results if r["line"] == 4} == {"customers.csv:4"}

        again, events, _ = send_batch(emulator, str(rows), *FAST)
        assert again == 1
        assert _by_line(events, "invalid") == bad  # still reported, never sent
        summary = _summary(events)
        assert (summary["sent"], summary["already_sent"]) == (0, 900)
        assert _stored(emulator) == stored
        assert _results(rows.with_name("customers.csv.results.jsonl")) == results  # nothing added

    def test_an_interrupted_run_resumes_and_sends_every_row_exactly_once(
        self, emulator: BackgroundEmulator, tmp_path: Path
    ) -> None:
        """SIGINT mid-run: sends in flight finish, the file stays whole, a rerun sends the rest."""
        rows = tmp_path / "rows.jsonl"
        good = _write_jsonl(rows, block=2)
        results_path = tmp_path / "out" / "results.jsonl"
        results_path.parent.mkdir()
        process = subprocess.Popen(
            _command(str(rows), "--results", str(results_path), "--concurrency", "8",
                     "--rate", "100"),
            env=_environ(emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _wait_for_lines(results_path, 100, process)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert "stopping" in stderr
        first = _results(results_path)
        assert 100 <= len(first) < ROWS
        assert all("sid" in r for r in first)  # the sends in flight finished
        summary = _summary(_events(stdout))
        assert summary["interrupted"] is True
        assert summary["sent"] + summary["not_sent"] == ROWS
        stored = _stored(emulator)
        assert sum(stored[to] for to in good.values()) == len(first)

        code, events, _ = send_batch(emulator, str(rows), "--results", str(results_path), *FAST)
        assert code == 0
        summary = _summary(events)
        assert (summary["sent"], summary["already_sent"]) == (ROWS - len(first), len(first))
        stored = _stored(emulator)
        assert [stored[to] for to in good.values()] == [1] * len(good)
        assert set(_sids(_results(results_path))) == set(good)

    def test_a_second_interrupt_records_sends_in_flight_as_unknown_and_never_resends_them(
        self, emulator: BackgroundEmulator, tmp_path: Path
    ) -> None:
        """Abandoned sends are unknown: reported by a rerun, sent again only when asked."""
        rows = tmp_path / "rows.jsonl"
        good = _write_jsonl(rows, block=3, count=200)
        results_path = rows.with_name("rows.jsonl.results.jsonl")
        # 80 go at once (the limiter's burst), then 2 a second: 20 sends wait in flight.
        process = subprocess.Popen(
            _command(str(rows), "--concurrency", "20", "--rate", "2", "--progress", "none"),
            env=_environ(emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _wait_for_lines(results_path, 60, process)
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        assert "stopping" in process.stderr.readline()
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
        assert process.returncode == 130
        first = _results(results_path)
        unknown = {r["line"] for r in first if r.get("code") == "SEND_OUTCOME_UNKNOWN"}
        assert unknown
        assert set(_by_line(_events(stdout), "unknown")) == unknown
        before = _stored(emulator)

        code, events, _ = send_batch(emulator, str(rows), *FAST)
        assert code == 1  # unknown rows are left for the user to decide
        assert set(_by_line(events, "unknown")) == unknown
        stored = _stored(emulator)
        assert {line: stored[good[line]] for line in unknown} == {
            line: before[good[line]] for line in unknown
        }
        assert all(stored[good[line]] == 1 for line in good if line not in unknown)

        code, events, _ = send_batch(emulator, str(rows), "--resend-unknown", *FAST)
        assert code == 0
        assert _summary(events)["sent"] == len(unknown)
        after = _stored(emulator)
        assert {line: after[good[line]] for line in unknown} == {
            line: before[good[line]] + 1 for line in unknown
        }

    def test_dry_run_validates_every_row_and_sends_nothing(
        self, emulator: BackgroundEmulator, tmp_path: Path
    ) -> None:
        """Exit 1 with each bad row by line and code when some are bad, 0 when none are."""
        rows = tmp_path / "customers.csv"
        _, bad = _write_csv(rows, block=4)
        before = _stored(emulator)
        code, events, _ = send_batch(emulator, str(rows), "--dry-run")
        assert code == 1
        assert _by_line(events, "invalid") == bad
        assert _summary(events)["invalid"] == len(bad)
        good = tmp_path / "good.jsonl"
        _write_jsonl(good, block=4, count=10)
        code, events, _ = send_batch(emulator, str(good), "--dry-run")
        assert (code, _summary(events)["invalid"]) == (0, 0)
        assert not [e for e in events if e["event"] == "warning"]  # the settings are whole
        assert _stored(emulator) == before
        assert not list(tmp_path.glob("*.results.jsonl"))

    def test_a_dry_run_says_when_the_settings_would_stop_the_real_run(
        self, emulator: BackgroundEmulator, tmp_path: Path
    ) -> None:
        """The rows are valid (exit 0), and a missing token is named before a real run."""
        good = tmp_path / "good.jsonl"
        _write_jsonl(good, block=4, count=3)
        environ = {k: v for k, v in _environ(emulator).items() if k != "TWILIO_AUTH_TOKEN"}
        done = subprocess.run(
            _command(str(good), "--dry-run"),
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        [warning] = [e for e in _events(done.stdout) if e["event"] == "warning"]
        assert warning["code"] == "MISSING_CREDENTIALS"
        assert "AuthToken" in warning["message"]

    def test_a_progress_bar_when_asked(self, emulator: BackgroundEmulator, tmp_path: Path) -> None:
        """``--progress bar`` draws rich's bar (on stderr) with the sent and failed counts."""
        rows = tmp_path / "rows.jsonl"
        _write_jsonl(rows, block=5, count=5)
        code, _, stderr = send_batch(emulator, str(rows), "--progress", "bar", *FAST)
        assert code == 0
        assert "5/5" in stderr
        assert "sent 5  failed 0" in stderr

    def test_a_file_with_an_unknown_column_is_refused_whole(
        self, emulator: BackgroundEmulator, tmp_path: Path
    ) -> None:
        """A misspelt column would silently drop data: the whole file is refused instead."""
        rows = tmp_path / "rows.csv"
        rows.write_text("to,txt\nwhatsapp:+15550001234,hello\n", encoding="utf-8")
        code, events, _ = send_batch(emulator, str(rows))
        assert code == 1
        [event] = events
        assert event["error"]["code"] == "INVALID_MESSAGE"
        assert "'txt'" in event["error"]["message"]


@pytest.mark.parametrize(("language", "name"), [("csv", "customers.csv"), ("jsonl", "rows.jsonl")])
def test_the_readme_files_send_as_written(
    emulator: BackgroundEmulator, tmp_path: Path, language: str, name: str
) -> None:
    """The README's example files (Bulk sends) are valid and send every row."""
    [example] = blocks(section("## Bulk sends"), language)
    rows = tmp_path / name
    rows.write_text(example, encoding="utf-8")
    code, events, _ = send_batch(emulator, str(rows), *FAST)
    assert code == 0, events
    summary = _summary(events)
    assert summary["sent"] == summary["rows"] == len(example.splitlines()) - (language == "csv")
