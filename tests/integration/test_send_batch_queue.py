"""``ratatosk send-batch --queue`` as a user runs it: rows submitted to Redis, workers send them.

Real processes only: a redis-server of this module's own, the emulator over
HTTP as Twilio, ``ratatosk worker`` subprocesses (one on uvloop, one on
asyncio's loop) and ``python -m ratatosk send-batch``. Each case checks what
the emulator stored (one message per good row: each row has its own
recipient), what the command printed and the results file a rerun reads.
Each case uses its own file name, so its rows' default message ids (file
name and line) are its own in the shared queue. Interrupts are real SIGINTs;
nothing is asserted about how long anything took.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from ratatosk.testing import BackgroundEmulator
from readme_text import blocks, section
from redis_support import RedisServer
from secret_check import assert_no_token

SENDER = "whatsapp:+14155238886"
TOKEN = "batch-queue-SECRET-token-0123456789ab"
ROWS = 300


@pytest.fixture(scope="module")
def emulator() -> Iterator[BackgroundEmulator]:
    with BackgroundEmulator(auth_token=TOKEN, step_delay=60.0) as running:
        yield running


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _environ(emulator: BackgroundEmulator, **extra: str) -> dict[str, str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "RATATOSK_", "REDIS"))
    }
    return (
        environ
        | extra
        | {
            "TWILIO_ACCOUNT_SID": emulator.account_sid,
            "TWILIO_AUTH_TOKEN": emulator.auth_token,
            "TWILIO_WHATSAPP_FROM": SENDER,
            "TWILIO_API_BASE_URL": emulator.url,
            "TWILIO_CONTENT_API_BASE_URL": emulator.url,
        }
    )


class Worker:
    """A ``ratatosk worker`` process; its banner read at start, its output kept at stop."""

    def __init__(
        self, emulator: BackgroundEmulator, redis: RedisServer, queue: str, *args: str, **env: str
    ) -> None:
        self._emulator = emulator
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ratatosk", "worker", "--redis", redis.url,
             "--queue-name", queue, "--rate", "5000", *args],
            env=_environ(emulator, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.banner = self.process.stdout.readline()
        assert "sending queue" in self.banner, self.stop()

    def stop(self) -> str:
        """SIGTERM, the way systemd stops it: a clean exit, nothing secret printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, err
        assert_no_token(self.banner + out + err, self._emulator.account_sid, TOKEN)
        return out + err


@pytest.fixture(scope="module")
def workers(emulator: BackgroundEmulator, redis: RedisServer) -> Iterator[list[Worker]]:
    """Two workers on the default queue: uvloop (the speed extra) and asyncio's loop."""
    started = [Worker(emulator, redis, "outbound")]
    started.append(Worker(emulator, redis, "outbound", RATATOSK_LOOP="asyncio"))
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


def _command(redis: RedisServer, *args: str) -> list[str]:
    return [sys.executable, "-m", "ratatosk", "--json", "send-batch", "--queue",
            "--redis", redis.url, *args]  # fmt: skip


def send_batch(
    emulator: BackgroundEmulator, redis: RedisServer, *args: str, queue: bool = True
) -> tuple[int, list[dict[str, Any]], str]:
    """Run the command to its end: exit code, its JSON events, its stderr."""
    command = _command(redis, *args)
    if not queue:
        command = [a for a in command if a not in {"--queue", "--redis", redis.url}]
    done = subprocess.run(
        command, env=_environ(emulator), capture_output=True, text=True, timeout=60, check=False
    )
    assert_no_token(done.stdout + done.stderr, emulator.account_sid, TOKEN)
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


def _sids(results: list[dict[str, Any]]) -> dict[int, str]:
    return {r["line"]: r["sid"] for r in results if "sid" in r}


def _queued(results: list[dict[str, Any]]) -> Counter[int]:
    """How many tickets the file holds per line: a row submitted twice would show 2."""
    return Counter(r["line"] for r in results if "queued" in r)


def _stored(emulator: BackgroundEmulator, block: int) -> Counter[str]:
    """How many messages the emulator holds per recipient of one file."""
    prefix = f"whatsapp:+1556{block}"
    return emulator.control(
        lambda model: Counter(m.to for m in model.outbound if m.to.startswith(prefix))
    )


#: A bad row of each kind, with the code it must be reported with.
BAD: list[tuple[dict[str, object], str]] = [
    ({"to": "bad-number", "text": "hello"}, "INVALID_RECIPIENT"),
    ({"text": "x" * 1601}, "INVALID_MESSAGE"),
    ({"to": "whatsapp:15550001111", "text": "no plus"}, "INVALID_WHATSAPP_NUMBER"),
    ({"template": "order_confirmed", "text": "both"}, "INVALID_MESSAGE"),
    ({"media": "not-a-url"}, "INVALID_MESSAGE"),
]


def _write(path: Path, block: int, count: int = ROWS) -> tuple[dict[int, str], dict[int, str]]:
    """``count`` JSON-lines rows, one in twelve bad: (good line -> recipient, bad line -> code)."""
    good: dict[int, str] = {}
    bad: dict[int, str] = {}
    with path.open("w", encoding="utf-8") as file:
        for i in range(count):
            line = i + 1
            row: dict[str, object] = {"to": f"whatsapp:+1556{block}{i:06d}"}
            if i % 12 == 11:
                fields, code = BAD[(i // 12) % len(BAD)]
                row |= fields
                bad[line] = code
            elif i % 4 == 3:
                variables = {"order_id": f"ORD-{i}", "delivery_date": "2026-05-15"}
                row |= {"template": "order_confirmed", "variables": variables}
            else:
                row["text"] = f"Hello row {i}"
            file.write(json.dumps(row) + "\n")
            if line not in bad:
                good[line] = str(row["to"])
    return good, bad


def _wait_for(path: Path, process: subprocess.Popen[str], key: str, count: int) -> None:
    """Until the results file has ``count`` lines with ``key`` (the run is that far)."""
    deadline = time.monotonic() + 60
    while True:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if text.count(f'"{key}"') >= count:
            return
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run never got that far"
        time.sleep(0.02)


def test_good_rows_sent_once_by_the_workers_bad_ones_reported_a_rerun_submits_nothing(
    emulator: BackgroundEmulator, redis: RedisServer, workers: list[Worker], tmp_path: Path
) -> None:
    rows = tmp_path / "queue-all.jsonl"
    good, bad = _write(rows, block=1)
    results_path = rows.with_name("queue-all.jsonl.results.jsonl")
    code, events, stderr = send_batch(emulator, redis, str(rows))
    assert code == 1, stderr  # some rows were bad
    assert _by_line(events, "invalid") == bad
    summary = _summary(events)
    assert (summary["submitted"], summary["sent"], summary["invalid"]) == (len(good), len(good),
                                                                           len(bad))  # fmt: skip
    assert (summary["failed"], summary["queued"], summary["interrupted"]) == (0, 0, False)
    assert f"progress: {len(good)}/{len(good)}" in stderr  # the workers' results, followed
    stored = _stored(emulator, 1)
    assert [stored[to] for to in good.values()] == [1] * len(good)
    assert sum(stored.values()) == len(good)
    results = _results(results_path)
    assert set(_sids(results)) == set(good)
    assert set(_sids(results).values()) == emulator.control(
        lambda model: {m.sid for m in model.outbound if m.to in set(good.values())}
    )
    assert _queued(results) == Counter(list(good))  # one ticket per good row
    assert {r["line"]: r["code"] for r in results if "code" in r} == bad
    assert [w.banner.split("; ")[-1].strip() for w in workers] == ["uvloop loop)",
                                                                   "asyncio loop)"]  # fmt: skip

    again, events, _ = send_batch(emulator, redis, str(rows))
    assert again == 1
    assert _by_line(events, "invalid") == bad
    summary = _summary(events)
    assert (summary["submitted"], summary["already_sent"]) == (0, len(good))
    assert _results(results_path) == results  # nothing added
    # The results file lost: the queue's results by message id say the rows went already.
    results_path.unlink()
    lost, events, _ = send_batch(emulator, redis, str(rows))
    assert lost == 1
    summary = _summary(events)
    assert (summary["submitted"], summary["collected"], summary["sent"]) == (0, len(good),
                                                                             len(good))  # fmt: skip
    [warning] = [e for e in events if e["event"] == "warning"]
    assert warning["rows"] == len(good)
    assert _sids(_results(results_path)) == _sids(results)
    assert _stored(emulator, 1) == stored


def test_interrupted_while_waiting_then_rerun_finishes_without_duplicates(
    emulator: BackgroundEmulator, redis: RedisServer, tmp_path: Path
) -> None:
    """SIGINT while the workers send: queued rows recorded as queued, waited for by the rerun."""
    rows = tmp_path / "queue-interrupted.jsonl"
    good, _ = _write(rows, block=2)
    results_path = tmp_path / "interrupted.results.jsonl"
    run = subprocess.Popen(
        _command(redis, str(rows), "--results", str(results_path), "--queue-name", "slow"),
        env=_environ(emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # A worker slow enough (100 sends a second, no burst) to be caught halfway.
    worker = Worker(emulator, redis, "slow", "--rate", "100", "--burst", "1")
    try:
        _wait_for(results_path, run, "sid", 20)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 130, stderr
        assert "stopping" in stderr
        assert_no_token(stdout + stderr, emulator.account_sid, TOKEN)
        first = _results(results_path)
        assert _queued(first) == Counter(list(good))  # every good row's ticket was written down
        summary = _summary(_events(stdout))
        assert summary["interrupted"] is True
        assert summary["submitted"] == len(good)
        assert summary["sent"] == len(_sids(first)) < len(good)
        assert summary["queued"] == len(good) - len(_sids(first))

        code, events, _ = send_batch(emulator, redis, str(rows), "--results", str(results_path),
                                     "--queue-name", "slow")  # fmt: skip
        assert code == 1  # the bad rows
        summary = _summary(events)
        assert summary["submitted"] == 0  # waited for, never submitted twice
        assert summary["sent"] + summary["already_sent"] == len(good)
    finally:
        worker.stop()
    results = _results(results_path)
    assert _queued(results) == Counter(list(good))
    assert set(_sids(results)) == set(good)
    stored = _stored(emulator, 2)
    assert [stored[to] for to in good.values()] == [1] * len(good)
    assert sum(stored.values()) == len(good)


def test_no_wait_submits_and_a_later_run_collects_the_results(
    emulator: BackgroundEmulator, redis: RedisServer, tmp_path: Path
) -> None:
    rows = tmp_path / "queue-later.jsonl"
    good, _ = _write(rows, block=3, count=60)
    results_path = rows.with_name("queue-later.jsonl.results.jsonl")
    later = ("--queue-name", "later")
    code, events, _ = send_batch(emulator, redis, str(rows), "--no-wait", *later)
    assert code == 1  # bad rows; the queued ones are what was asked
    summary = _summary(events)
    assert (summary["submitted"], summary["queued"], summary["sent"]) == (len(good), len(good), 0)
    assert _queued(_results(results_path)) == Counter(list(good))
    assert not _sids(_results(results_path))

    # Without --queue a row in the queue is left to its worker, not sent a second way.
    code, events, _ = send_batch(emulator, redis, str(rows), queue=False)
    assert code == 1
    assert set(_by_line(events, "queued")) == set(good)
    assert _summary(events)["sent"] == 0
    assert not _stored(emulator, 3)

    worker = Worker(emulator, redis, "later")
    try:
        code, events, stderr = send_batch(emulator, redis, str(rows), "--progress", "bar", *later)
    finally:
        worker.stop()
    assert code == 1
    assert "workers" in stderr  # rich's bar, counting the workers' results
    assert f"{len(good)}/{len(good)}" in stderr
    assert f"sent {len(good)}  failed 0" in stderr
    summary = _summary(events)
    assert (summary["submitted"], summary["sent"], summary["queued"]) == (0, len(good), 0)
    results = _results(results_path)
    assert set(_sids(results)) == set(good)
    assert _queued(results) == Counter(list(good))
    stored = _stored(emulator, 3)
    assert [stored[to] for to in good.values()] == [1] * len(good)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--redis", "redis://127.0.0.1:1/0"), "go with --queue"),
        (("--no-wait",), "go with --queue"),
        (("--queue", "--redis", "redis://127.0.0.1:1/0", "--rate", "5"), "the workers send"),
        (("--queue", "--redis", "redis://127.0.0.1:1/0", "--resend-unknown"), "first result"),
        (("--queue", "--redis", "http://127.0.0.1:6379"), "redis:// or rediss://"),
        (("--queue",), "give --redis URL or set REDIS_URL"),
    ],
)
def test_options_that_do_not_go_together_are_exit_2(
    emulator: BackgroundEmulator, tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    rows = tmp_path / "rows.jsonl"
    _write(rows, block=4, count=3)
    done = subprocess.run(
        [sys.executable, "-m", "ratatosk", "send-batch", str(rows), *args],
        env=_environ(emulator), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("error: ")
    assert words in done.stdout
    assert not list(tmp_path.glob("*.results.jsonl"))


def _run_in(
    directory: Path, emulator: BackgroundEmulator, args: list[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args, "--json"], cwd=directory, env=_environ(emulator),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_readme_queue_commands_run_as_written(
    emulator: BackgroundEmulator, redis: RedisServer, tmp_path: Path
) -> None:
    """README, Bulk sends through the queue: its worker and send-batch lines, its CSV example."""
    text = section("### Bulk sends through the queue")
    [example] = blocks(section("## Bulk sends"), "csv")
    (tmp_path / "customers.csv").write_text(example, encoding="utf-8")
    [commands] = blocks(text, "bash")
    lines = [line.split("#")[0].strip() for line in commands.splitlines() if line.strip()]
    arguments = [
        shlex.split(line.replace("redis://cache.internal:6379/0", redis.url)) for line in lines
    ]
    assert [a[:2] for a in arguments] == [["ratatosk", "worker"]] + [["ratatosk", "send-batch"]] * 2
    assert arguments[0][-1] == "&"
    worker = subprocess.Popen(
        [sys.executable, "-m", *arguments[0][:-1]], cwd=tmp_path, env=_environ(emulator),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        answers = [_run_in(tmp_path, emulator, args) for args in arguments[1:]]
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert [a.returncode for a in answers] == [0, 0], [a.stdout + a.stderr for a in answers]
    followed, again = (_summary(_events(a.stdout)) for a in answers)
    rows = len(example.splitlines()) - 1
    assert (followed["submitted"], followed["sent"]) == (rows, rows)
    assert (again["submitted"], again["already_sent"]) == (0, rows)
    recipients = {line.split(",")[0] for line in example.splitlines()[1:]}
    stored = emulator.control(lambda model: Counter(m.to for m in model.outbound))
    assert {to: stored[to] for to in recipients} == dict.fromkeys(recipients, 1)
    everything = out + err + "".join(a.stdout + a.stderr for a in answers)
    assert_no_token(everything, emulator.account_sid, TOKEN)


def _keys(redis: RedisServer) -> Any:
    """A plain (blocking) client on the module's server, to age or drop what the queue holds."""
    return redis_py.Redis.from_url(redis.url, decode_responses=True)


def _unknown_lines(results: list[dict[str, Any]]) -> set[int]:
    return {r["line"] for r in results if r.get("code") == "QUEUED_MESSAGE_UNKNOWN"}


def test_a_row_whose_result_expired_ends_with_queued_message_unknown_not_a_wait_forever(
    emulator: BackgroundEmulator, redis: RedisServer, tmp_path: Path
) -> None:
    """After --no-wait, the workers finish, and the results outlive their TTL before the rerun.

    The queue then holds neither the entries (finished) nor their results
    (expired, as after the 24 h TTL: here each key's TTL is cut to 1 ms). The
    rerun used to poll those rows forever; now each ends QUEUED_MESSAGE_UNKNOWN,
    counted of unknown outcome, and a later run does not submit them again:
    Twilio does hold them.
    """
    rows = tmp_path / "queue-expired.jsonl"
    good, _ = _write(rows, block=5, count=8)
    results_path = rows.with_name("queue-expired.jsonl.results.jsonl")
    expired = ("--queue-name", "expired")
    code, events, _ = send_batch(emulator, redis, str(rows), "--no-wait", *expired)
    assert _summary(events)["submitted"] == len(good)
    worker = Worker(emulator, redis, "expired")
    try:
        client = _keys(redis)
        deadline = time.monotonic() + 60
        pattern = "ratatosk:queue:{expired}:result:*"
        while len(client.keys(pattern)) < len(good):
            assert time.monotonic() < deadline, "the worker never finished the rows"
            time.sleep(0.05)
    finally:
        worker.stop()
    for key in client.keys(pattern):
        client.pexpire(key, 1)
    while client.keys(pattern):  # gone, as after the TTL
        time.sleep(0.01)
    client.close()

    code, events, stderr = send_batch(emulator, redis, str(rows), *expired)
    assert code == 1, stderr
    summary = _summary(events)
    assert (summary["unknown"], summary["sent"], summary["queued"]) == (len(good), 0, 0)
    assert set(_by_line(events, "unknown")) == set(good)
    assert set(_by_line(events, "unknown").values()) == {"QUEUED_MESSAGE_UNKNOWN"}
    results = _results(results_path)
    assert _unknown_lines(results) == set(good)
    assert all("Twilio" in r["message"] for r in results if "code" in r and r["line"] in good)

    again, events, _ = send_batch(emulator, redis, str(rows), *expired)
    assert again == 1
    summary = _summary(events)
    assert (summary["submitted"], summary["unknown"], summary["queued"]) == (0, len(good), 0)
    stored = _stored(emulator, 5)  # the worker did send them, once: hence "check Twilio"
    assert [stored[to] for to in good.values()] == [1] * len(good)


def test_rows_the_queue_lost_end_while_rows_still_queued_are_waited_for(
    emulator: BackgroundEmulator, redis: RedisServer, tmp_path: Path
) -> None:
    """Half the tickets name entries the queue no longer has (deleted, no result); half wait.

    The run records the lost half at once and keeps waiting for the other
    half, which only a worker started afterwards can finish: the run ends
    when it has, with every row accounted for and none sent twice.
    """
    rows = tmp_path / "queue-lost.jsonl"
    good, _ = _write(rows, block=6, count=12)
    results_path = rows.with_name("queue-lost.jsonl.results.jsonl")
    lost_queue = ("--queue-name", "lost")
    send_batch(emulator, redis, str(rows), "--no-wait", *lost_queue)
    tickets = {r["line"]: r["queued"] for r in _results(results_path) if "queued" in r}
    lines = sorted(tickets)
    lost, kept = lines[: len(lines) // 2], lines[len(lines) // 2 :]
    client = _keys(redis)
    assert client.xdel("ratatosk:queue:{lost}", *(tickets[line] for line in lost)) == len(lost)
    client.close()

    run = subprocess.Popen(
        _command(redis, str(rows), *lost_queue),
        env=_environ(emulator), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker: Worker | None = None
    try:
        _wait_for(results_path, run, "QUEUED_MESSAGE_UNKNOWN", len(lost))
        assert run.poll() is None  # the kept rows have no result and nobody sends them yet
        worker = Worker(emulator, redis, "lost")
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        if worker is not None:
            worker.stop()
    assert run.returncode == 1, stderr
    assert_no_token(stdout + stderr, emulator.account_sid, TOKEN)
    events = _events(stdout)
    summary = _summary(events)
    assert (summary["unknown"], summary["sent"], summary["queued"]) == (len(lost), len(kept), 0)
    assert set(_by_line(events, "unknown")) == set(lost)
    results = _results(results_path)
    assert _unknown_lines(results) == set(lost)
    assert set(_sids(results)) == set(kept)
    stored = _stored(emulator, 6)
    assert {line: stored[good[line]] for line in lines} == {
        **dict.fromkeys(lost, 0),
        **dict.fromkeys(kept, 1),
    }


def test_a_dead_lettered_row_ends_the_wait_with_its_workers_outcome(
    emulator: BackgroundEmulator, redis: RedisServer, tmp_path: Path
) -> None:
    """One row's entry is unreadable (its message replaced by bad JSON): a worker dead-letters it.

    The run following the rows records that row's stored outcome
    (MESSAGE_DESERIALIZATION_FAILED, dead-lettered) and ends; the others are sent.
    """
    rows = tmp_path / "queue-dead.jsonl"
    good, _ = _write(rows, block=7, count=4)
    results_path = rows.with_name("queue-dead.jsonl.results.jsonl")
    dead_queue = ("--queue-name", "dead")
    send_batch(emulator, redis, str(rows), "--no-wait", *dead_queue)
    [ticket, *_] = [r for r in _results(results_path) if "queued" in r]
    client = _keys(redis)
    stream = "ratatosk:queue:{dead}"
    assert client.xdel(stream, ticket["queued"]) == 1
    replaced = client.xadd(stream, {"id": ticket["id"], "m": '{"v": 999}'})
    client.close()
    with results_path.open(
        "a", encoding="utf-8"
    ) as file:  # the row's ticket, as a submit writes it
        file.write(json.dumps({"line": ticket["line"], "id": ticket["id"], "queued": replaced}))
        file.write("\n")

    worker = Worker(emulator, redis, "dead")
    try:
        code, events, stderr = send_batch(emulator, redis, str(rows), *dead_queue)
    finally:
        out = worker.stop()
    assert code == 1, stderr
    assert "1 dead-lettered" in out
    assert _by_line(events, "failed") == {ticket["line"]: "MESSAGE_DESERIALIZATION_FAILED"}
    [failed] = [e for e in events if e["event"] == "failed"]
    assert failed["error"]["details"]["dead_lettered"] is True
    summary = _summary(events)
    assert (summary["failed"], summary["sent"], summary["queued"]) == (1, len(good) - 1, 0)
    assert set(_sids(_results(results_path))) == set(good) - {ticket["line"]}
