"""``ratatosk serve --workers N`` as an operator runs it: real processes, real signals.

A supervisor and its workers are started with ``python -m ratatosk``; signed
webhooks go to the one port over fresh connections (Linux spreads them over
the workers' ``SO_REUSEPORT`` sockets); workers are killed with SIGKILL and
the supervisor stopped with SIGTERM or a terminal's SIGINT, for real.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ratatosk.testing import FakeTwilio
from redis_support import RedisServer
from secret_check import assert_no_token

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="--workers balances with Linux's SO_REUSEPORT"
)

ACCOUNT = "AC" + "3c" * 16
TOKEN = "workers-secret-token-0a1b2c3d4e5f"
PUBLIC = "https://hooks.example.com"
PATH = "/webhooks/twilio/whatsapp"
#: A deadline against hangs, never a measured duration.
PATIENCE = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environ(**extra: str) -> dict[str, str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_", "RATATOSK_"))
    }
    return environ | {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN} | extra


class Supervisor:
    """A running ``ratatosk --json serve --workers N``; its stdout read line by line."""

    def __init__(self, *options: str, environ: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ratatosk", "--json", "serve", "--port", str(self.port),
             "--public-url", PUBLIC, *options],
            env=environ if environ is not None else _environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group, as a shell gives a foreground job
        )  # fmt: skip
        self.lines: list[str] = []
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._held: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            with contextlib.suppress(json.JSONDecodeError):
                self._events.put(json.loads(line))
        self._events.put(None)

    def next_event(self, kind: str) -> dict[str, Any]:
        """The next event of ``kind``; others are kept for later (the output ending fails)."""
        for index, event in enumerate(self._held):
            if event["event"] == kind:
                return self._held.pop(index)
        while True:
            event = self._events.get(timeout=PATIENCE)
            assert event is not None, f"output ended before a {kind!r} event: {self.lines}"
            if event["event"] == kind:
                return event
            self._held.append(event)

    def messages(self, count: int) -> list[dict[str, Any]]:
        return [self.next_event("message") for _ in range(count)]

    def finish(self) -> int:
        """Wait for the exit; its status. Reads what is left of stdout and stderr."""
        try:
            code = self.process.wait(timeout=PATIENCE)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._reader.join(PATIENCE)
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        return code

    def close(self) -> None:
        self._reader.join(PATIENCE)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def output(self) -> str:
        return "".join(self.lines) + self.stderr


@contextlib.contextmanager
def supervisor(*options: str, environ: dict[str, str] | None = None) -> Iterator[Supervisor]:
    running = Supervisor(*options, environ=environ)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()
        running.close()


def _post(port: int, fake: FakeTwilio, text: str) -> int:
    """One signed inbound message on a fresh connection (Linux picks the worker per connection)."""
    form, signature = fake.inbound_message_body(
        PUBLIC + PATH, "whatsapp:+15551230000", "whatsapp:+14155238886", text
    )
    return _send(port, form, signature)


def _send(port: int, form: str, signature: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        connection.request(
            "POST",
            PATH,
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (exited, or a zombie whose sockets are closed)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped before the open, or mid-read
        return True


def _wait_gone(pid: int) -> None:
    waiter = threading.Event()
    for _ in range(int(PATIENCE / 0.05)):
        if _gone(pid):
            return
        waiter.wait(0.05)
    raise AssertionError(f"process {pid} still runs after SIGKILL")


#: The standard loop, and the one ``serve`` picks by itself (uvloop when the speed extra is in).
LOOPS = ["asyncio", "default"]


def _on_loop(loop: str) -> dict[str, str]:
    return _environ(RATATOSK_LOOP=loop) if loop == "asyncio" else _environ()


@pytest.mark.parametrize("loop", LOOPS)
def test_two_workers_share_one_port_a_killed_one_is_replaced_and_sigterm_stops_all(
    loop: str,
) -> None:
    fake = FakeTwilio(ACCOUNT, TOKEN)
    with supervisor("--workers", "2", environ=_on_loop(loop)) as served:
        listening = served.next_event("listening")
        if loop == "asyncio":
            assert listening["loop"] == "asyncio"
        workers = set(listening["workers"])
        assert len(workers) == 2
        assert listening["port"] == served.port
        assert served.next_event("warning")["message"].startswith("without Redis")

        assert [_post(served.port, fake, f"hello {i}") for i in range(40)] == [200] * 40
        events = served.messages(40)
        assert {event["worker"] for event in events} == workers
        assert sorted(event["content"]["text"] for event in events) == sorted(
            f"hello {i}" for i in range(40)
        )

        killed, survivor = sorted(workers)
        os.kill(killed, signal.SIGKILL)
        _wait_gone(killed)
        # Until the replacement listens, the survivor answers every new connection.
        assert [_post(served.port, fake, f"meanwhile {i}") for i in range(10)] == [200] * 10
        restarted = served.next_event("restarted")
        assert restarted["exited"] == killed
        assert restarted["returncode"] == -signal.SIGKILL
        replacement = restarted["worker"]
        assert replacement not in workers
        assert not _gone(replacement)

        assert [_post(served.port, fake, f"after {i}") for i in range(40)] == [200] * 40
        after = [e for e in served.messages(50) if e["content"]["text"].startswith("after")]
        assert {event["worker"] for event in after} == {survivor, replacement}

        served.process.send_signal(signal.SIGTERM)
        assert served.finish() == 0
    assert served.next_event("stopped")
    for pid in (survivor, replacement):
        assert _gone(pid)
    assert_no_token(served.output(), ACCOUNT, TOKEN)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_group_stops_every_process_cleanly(
    loop: str, signum: signal.Signals
) -> None:
    """A terminal's Ctrl-C, or systemd's SIGTERM to the cgroup: every process gets one."""
    with supervisor("--workers", "2", environ=_on_loop(loop)) as served:
        workers = served.next_event("listening")["workers"]
        os.killpg(served.process.pid, signum)
        assert served.finish() == 0
    assert all(_gone(pid) for pid in workers)
    assert "Traceback" not in served.output()


def test_a_supervisor_killed_outright_takes_its_workers_with_it() -> None:
    with supervisor("--workers", "2") as served:
        workers = served.next_event("listening")["workers"]
        served.process.kill()  # SIGKILL to the supervisor alone: no chance to stop anyone
        served.process.wait(PATIENCE)
        for pid in workers:
            _wait_gone(pid)  # the lifeline's EOF stopped each worker


def test_workers_share_deduplication_through_redis(redis_server: RedisServer) -> None:
    fake = FakeTwilio(ACCOUNT, TOKEN)
    deliveries = [
        fake.inbound_message_body(
            PUBLIC + PATH, "whatsapp:+15551230000", "whatsapp:+14155238886", f"order {i}"
        )
        for i in range(10)
    ]
    with supervisor("--workers", "2", "--redis", redis_server.url) as served:
        listening = served.next_event("listening")
        assert listening["state"] == "shared through Redis"
        # Each delivery four times over fresh connections, as Twilio retries would land.
        for form, signature in deliveries:
            assert [_send(served.port, form, signature) for _ in range(4)] == [200] * 4
        events = served.messages(10)
        served.process.send_signal(signal.SIGTERM)
        assert served.finish() == 0
    assert sorted(e["content"]["text"] for e in events) == sorted(f"order {i}" for i in range(10))
    assert len([line for line in served.lines if '"event": "message"' in line]) == 10
    assert {event["worker"] for event in events} <= set(listening["workers"])


def test_without_redis_each_worker_deduplicates_alone() -> None:
    """The contrast the warning states: the same deliveries reach the handler more than once."""
    fake = FakeTwilio(ACCOUNT, TOKEN)
    deliveries = [
        fake.inbound_message_body(
            PUBLIC + PATH, "whatsapp:+15551230000", "whatsapp:+14155238886", f"order {i}"
        )
        for i in range(10)
    ]
    with supervisor("--workers", "2") as served:
        served.next_event("listening")
        for form, signature in deliveries:
            assert [_send(served.port, form, signature) for _ in range(4)] == [200] * 4
        served.process.send_signal(signal.SIGTERM)
        assert served.finish() == 0
    handled = [line for line in served.lines if '"event": "message"' in line]
    # Each worker handles a delivery at most once: 10 to 20 events, 10 only if every
    # delivery's four connections all reached one worker (odds 1 in 8 per delivery).
    assert 10 < len(handled) <= 20


def test_settings_that_cannot_work_stop_the_supervisor_with_the_error_once() -> None:
    environ = _environ()
    del environ["TWILIO_AUTH_TOKEN"]
    with supervisor("--workers", "3", environ=environ) as served:
        assert served.finish() == 1
    errors = [line for line in served.lines if '"event": "error"' in line]
    assert len(errors) == 1
    assert "listening" not in served.output()


def test_a_port_in_use_is_refused_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "ratatosk", "--json", "serve", "--workers", "2",
             "--port", str(port)],
            env=_environ(),
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["code"] == "ADDRESS_UNAVAILABLE"


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_fewer_than_one_worker_is_a_usage_error(workers: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ratatosk", "serve", "--workers", workers],
        env=_environ(),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers must be 1 or more" in done.stdout
