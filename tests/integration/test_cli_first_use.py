"""What a newcomer meets first on the command line: every refusal says why, in text and JSON.

Real ``python -m ratatosk`` processes, as a shell runs them; a Redis that
cannot be reached is a closed port on loopback.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_support import RedisServer

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TWILIO_")}
    env.pop("REDIS_URL", None)
    env.pop("RATATOSK_LOOP", None)
    return {**env, **extra}


def ratatosk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ratatosk", *args],
        env=environment() if env is None else env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("serve", "--port", "8082", "--public-url", "hooks.example.com"), "--public-url must be"),
        (("result", "m1"), "give --redis URL or set REDIS_URL"),
        (("result", "m1", "--redis", UNREACHABLE_REDIS, "--wait", "-1"), "--wait takes seconds"),
        (("send-batch", "/nonexistent/rows.csv"), "is not a readable file"),
    ],
)
def test_a_usage_error_in_json_says_what_was_wrong(args: tuple[str, ...], says: str) -> None:
    text = ratatosk(*args)
    answer = ratatosk("--json", *args)
    assert (text.returncode, answer.returncode) == (2, 2), answer.stdout + answer.stderr
    (event,) = events(answer.stdout)
    assert event["event"] == "usage"
    assert says in event["message"]
    assert text.stdout == f"error: {event['message']}\n"  # the same words as without --json


def test_an_unreachable_redis_is_a_coded_error_for_result() -> None:
    text = ratatosk("result", "m1", "--redis", UNREACHABLE_REDIS)
    answer = ratatosk("--json", "result", "m1", "--redis", UNREACHABLE_REDIS)
    assert (text.returncode, answer.returncode) == (1, 1), answer.stdout + answer.stderr
    assert text.stdout.startswith("error STATE_STORE_UNAVAILABLE: the queue could not be asked")
    (event,) = events(answer.stdout)
    assert event["event"] == "error"
    assert event["error"]["code"] == "STATE_STORE_UNAVAILABLE"
    assert "the queue could not be asked" in event["error"]["message"]


def test_an_unreachable_redis_is_a_coded_error_for_send_batch_queue(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text("to,text\nwhatsapp:+15550002222,hi\n")
    env = environment(
        TWILIO_ACCOUNT_SID="AC" + "1" * 32,
        TWILIO_AUTH_TOKEN="first-use-SECRET-token",
        TWILIO_WHATSAPP_FROM="whatsapp:+14155238886",
    )
    args = ("send-batch", str(rows), "--queue", "--redis", UNREACHABLE_REDIS, "--progress", "none")
    text = ratatosk(*args, env=env)
    answer = ratatosk("--json", *args, env=env)
    assert (text.returncode, answer.returncode) == (1, 1), answer.stdout + answer.stderr
    assert "error STATE_STORE_UNAVAILABLE: the queue could not be asked" in text.stdout
    error, summary = events(answer.stdout)
    assert (error["event"], error["error"]["code"]) == ("error", "STATE_STORE_UNAVAILABLE")
    assert (summary["event"], summary["not_sent"]) == ("summary", 1)


def _sender_env(**extra: str) -> dict[str, str]:
    return environment(
        TWILIO_ACCOUNT_SID="AC" + "1" * 32,
        TWILIO_AUTH_TOKEN="first-use-SECRET-token",
        TWILIO_WHATSAPP_FROM="whatsapp:+14155238886",
        **extra,
    )


def _follow_up(queued: subprocess.CompletedProcess[str]) -> list[str]:
    assert queued.returncode == 0, queued.stdout + queued.stderr
    _, _, hint = queued.stdout.strip().partition("; its result: ")
    return shlex.split(hint)


def _run_as_printed(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert command[:2] == ["ratatosk", "result"]
    return ratatosk(*command[1:], env=env)


def test_the_follow_up_of_send_queue_names_the_redis_it_was_given_without_its_password(
    own_redis_server: RedisServer,
) -> None:
    password = "first-use-redis-PASSWORD-7c1e"
    with redis.Redis.from_url(own_redis_server.url) as client:
        client.config_set("requirepass", password)
    url = f"redis://:{password}@127.0.0.1:{own_redis_server.port}/0"
    env = _sender_env()
    queued = ratatosk("send", "--queue", "--redis", url, "--queue-name", "first-use",
                      "--id", "hint 1", "--to", "whatsapp:+15550002222", "--text", "hi",
                      env=env)  # fmt: skip
    command = _follow_up(queued)
    masked = f"redis://:***@127.0.0.1:{own_redis_server.port}/0"
    assert command == ["ratatosk", "result", "hint 1", "--redis", masked,
                       "--queue-name", "first-use", "--wait", "30"]  # fmt: skip
    assert password not in queued.stdout + queued.stderr
    command[command.index(masked)] = url  # the reader puts the password back
    command[-1] = "0"
    asked = _run_as_printed(command, env)
    assert asked.returncode == 1, asked.stdout + asked.stderr  # found the queue: no result yet
    assert asked.stdout == "hint 1: no result yet\n"


def test_the_follow_up_of_send_queue_leaves_out_a_redis_from_redis_url(
    own_redis_server: RedisServer,
) -> None:
    env = _sender_env(REDIS_URL=own_redis_server.url)
    queued = ratatosk("send", "--queue", "--id", "hint-2", "--to", "whatsapp:+15550002222",
                      "--text", "hi", env=env)  # fmt: skip
    command = _follow_up(queued)
    assert command == ["ratatosk", "result", "hint-2", "--wait", "30"]
    command[-1] = "0"
    asked = _run_as_printed(command, env)
    assert asked.returncode == 1, asked.stdout + asked.stderr
    assert asked.stdout == "hint-2: no result yet\n"


def test_the_worker_log_keeps_its_notes_apart_while_redis_is_down() -> None:
    """The log budget's note follows the error after "; ", not glued to its last word."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", "--json", "worker", "--redis", UNREACHABLE_REDIS],
        env=_sender_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    try:
        lines: list[str] = []
        while not any("only counted" in line for line in lines):
            line = worker.stderr.readline()
            assert line, "the worker ended without the log budget's note"
            lines.append(line.rstrip("\n"))
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0
    *first, budgeted = [line for line in lines if line.startswith("WARNING ratatosk.worker:")]
    assert len(first) == 4  # the budget: five lines a minute, the fifth says so
    assert all(": the queue could not read: Redis could not " in line for line in first)
    note = "; the next ones within 60 s are only counted"
    assert budgeted.endswith(note)
    assert budgeted.removesuffix(note) in first  # the same error, then the note, apart
    warning, *_ = events(out)
    assert warning["event"] == "warning"  # and in JSON it says what it warns of
    assert warning["message"].endswith("; waiting for it")


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--port", "0"),
        ("serve", "--port", "0", "--workers", "2"),
        ("worker", "--redis", UNREACHABLE_REDIS),
    ],
)
def test_an_unknown_event_loop_is_a_usage_error(args: tuple[str, ...]) -> None:
    env = _sender_env(RATATOSK_LOOP="bogus")
    text = ratatosk(*args, env=env)
    answer = ratatosk("--json", *args, env=env)
    assert (text.returncode, answer.returncode) == (2, 2), text.stdout + text.stderr
    assert text.stdout.startswith("error: RATATOSK_LOOP='bogus' names no event loop: ")
    assert "use asyncio or uvloop" in text.stdout
    (event,) = events(answer.stdout)
    assert (event["event"], event["message"]) == ("usage", text.stdout.strip()[len("error: ") :])
    assert "never awaited" not in text.stderr + answer.stderr
