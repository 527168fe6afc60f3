"""``ratatosk send --queue``, ``ratatosk result`` and ``ratatosk worker`` as a user runs them.

Real processes against a real redis-server and the emulator: a message
queued from the command line is sent by a worker and its result read back;
bad usage and an unreachable Redis give clear answers; no output ever
carries the auth token. The kill-and-restart figures are
``test_queue_workers.py``'s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ratatosk.testing import BackgroundEmulator
from readme_text import blocks, section
from redis_support import RedisServer
from secret_check import assert_no_token

SENDER = "whatsapp:+14155238886"
TOKEN = "cli-queue-SECRET-token-0123456789ab"


@pytest.fixture
def emulator() -> Iterator[BackgroundEmulator]:
    with BackgroundEmulator(auth_token=TOKEN, step_delay=60.0) as running:
        yield running


def environment(emulator: BackgroundEmulator) -> dict[str, str]:
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": emulator.account_sid,
        "TWILIO_AUTH_TOKEN": emulator.auth_token,
        "TWILIO_API_BASE_URL": emulator.url,
        "TWILIO_WHATSAPP_FROM": SENDER,
    }
    env.pop("REDIS_URL", None)
    return env


def ratatosk(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ratatosk", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_queued_from_the_command_line_sent_by_a_worker_read_back(
    own_redis_server: RedisServer, emulator: BackgroundEmulator
) -> None:
    env = environment(emulator)
    url = own_redis_server.url
    queued = ratatosk(env, "--json", "send", "--queue", "--redis", url, "--id", "cli-1",
                      "--to", "whatsapp:+15550002222", "--text", "from the queue")  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    (ticket,) = events(queued.stdout)
    assert (ticket["event"], ticket["message_id"]) == ("queued", "cli-1")
    pending = ratatosk(env, "result", "cli-1", "--redis", url)
    assert pending.returncode == 1
    assert "cli-1: no result yet" in pending.stdout
    worker = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", "worker", "--redis", url, "--consumer", "cli-w"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = ratatosk(env, "--json", "result", "cli-1", "--redis", url, "--wait", "45")
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    (result,) = events(sent.stdout)
    assert result["event"] == "sent"
    assert result["sid"] in {m.sid for m in emulator.model.outbound}
    assert worker.returncode == 0, err
    assert "worker cli-w: sending queue 'outbound'" in out
    assert "stopped: 1 completed" in out
    everything = queued.stdout + queued.stderr + pending.stdout + sent.stdout + out + err
    assert_no_token(everything, emulator.account_sid, TOKEN)


def test_a_message_the_connector_would_refuse_is_refused_before_the_queue(
    own_redis_server: RedisServer, emulator: BackgroundEmulator
) -> None:
    env = environment(emulator)
    refused = ratatosk(env, "send", "--queue", "--redis", own_redis_server.url,
                       "--to", "+1 555", "--text", "hi")  # fmt: skip
    assert refused.returncode == 1
    assert "INVALID_RECIPIENT" in refused.stdout
    queued = ratatosk(env, "--json", "result", "x", "--redis", own_redis_server.url)
    assert queued.returncode == 1  # nothing there, and nothing was queued


@pytest.mark.parametrize(
    "args",
    [
        ("worker",),
        ("worker", "--redis", "http://127.0.0.1:6379"),
        ("result", "m1"),
        ("send", "--queue", "--to", "whatsapp:+15550002222", "--text", "hi"),
        ("worker", "--redis", "redis://127.0.0.1:1/0", "--concurrency", "0"),
        ("worker", "--redis", "redis://127.0.0.1:1/0", "--visibility-timeout", "1", "--lease", "60",
         "--max-deliveries", "10"),
    ],
)  # fmt: skip
def test_bad_usage_is_exit_2_with_what_to_do(
    emulator: BackgroundEmulator, args: tuple[str, ...]
) -> None:
    answer = ratatosk(environment(emulator), *args)
    assert answer.returncode == 2, answer.stdout + answer.stderr
    assert answer.stdout.startswith("error: ")
    assert_no_token(answer.stdout + answer.stderr, emulator.account_sid, TOKEN)


def test_an_unreachable_redis_queues_nothing_and_says_so(
    own_redis_server: RedisServer, emulator: BackgroundEmulator
) -> None:
    own_redis_server.stop()
    env = environment(emulator)
    refused = ratatosk(env, "send", "--queue", "--redis", own_redis_server.url, "--id",
                       "down-1", "--to", "whatsapp:+15550002222", "--text", "hi")  # fmt: skip
    assert refused.returncode == 1
    assert "STATE_STORE_UNAVAILABLE" in refused.stdout
    assert "was not queued" in refused.stdout
    asked = ratatosk(env, "result", "down-1", "--redis", own_redis_server.url)
    assert asked.returncode == 1
    assert "the queue could not be asked" in asked.stdout
    assert_no_token(refused.stdout + asked.stdout, emulator.account_sid, TOKEN)


def test_the_readme_queue_example_runs_as_written(
    own_redis_server: RedisServer, emulator: BackgroundEmulator, tmp_path: Path
) -> None:
    """README, Queue and workers: the Python example, its Redis URL pointed at the test's."""
    (code,) = blocks(section("## Queue and workers"), "python")
    code = code.replace("redis://cache.internal:6379/0", own_redis_server.url)
    body = "".join(f"    {line}\n" if line else "\n" for line in code.splitlines())
    script = tmp_path / "queue_example.py"
    script.write_text(f"import asyncio\n\n\nasync def main():\n{body}\n\nasyncio.run(main())\n")
    env = environment(emulator)
    worker = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", "worker", "--redis", own_redis_server.url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ran = subprocess.run(
            [sys.executable, str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert ran.returncode == 0, ran.stderr
    sid = ran.stdout.strip()
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid), ran.stdout
    assert [m.sid for m in emulator.model.outbound] == [sid]  # submit and submit_many: one id
    assert worker.returncode == 0, err


def test_send_with_redis_and_no_queue_sends_now_and_one_id_once_across_processes(
    own_redis_server: RedisServer, emulator: BackgroundEmulator
) -> None:
    """``send --redis URL`` without ``--queue``: sent at once, on the shared ledger, so the
    same ``--id`` from a second process is answered with the first SID, not sent again."""
    env = environment(emulator)
    command = ["--json", "send", "--redis", own_redis_server.url, "--id", "direct-1",
               "--to", "whatsapp:+15550003333", "--text", "sent now, once"]  # fmt: skip
    first, second = ratatosk(env, *command), ratatosk(env, *command)
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    (sent,), (again,) = events(first.stdout), events(second.stdout)
    assert sent["event"] == again["event"] == "sent"
    assert again["sid"] == sent["sid"]
    assert again["data"]["replayed"] is True
    assert [m.body for m in emulator.model.outbound].count("sent now, once") == 1
    # Read by a person, the repeat says it was not a second message.
    text = ratatosk(env, *command[1:])
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.strip() == (
        f"sent {sent['sid']} ({sent['status']}) (already sent with this --id: not sent again)"
    )
    assert_no_token(first.stdout + first.stderr + second.stdout, emulator.account_sid, TOKEN)
