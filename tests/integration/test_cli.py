"""The ``ratatosk`` command as a user runs it: a real process against a real emulator process.

Nothing here imports the CLI: each case spawns ``python -m ratatosk`` with
credentials in the environment, exactly like a shell would, and checks the
exit code, the output and that the auth token never shows.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ACCOUNT = "AC" + "7e" * 16
TOKEN = "cli-secret-token-9f8e7d6c5b4a3921"
SENDER = "whatsapp:+14155238886"
RECIPIENT = "whatsapp:+15550002222"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", "emulator", "--port", str(port),
         "--account-sid", ACCOUNT, "--auth-token", TOKEN, "--step-delay", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            banner, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            banner, _ = process.communicate()
        assert TOKEN not in banner.decode()  # a token from the command line is not echoed
        assert "auth token (given with --auth-token, not shown)" in banner.decode()


def ratatosk(
    *args: str, url: str | None = None, token: str = TOKEN, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    if url is not None:
        environ |= {
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": token,
            "TWILIO_WHATSAPP_FROM": SENDER,
            "TWILIO_API_BASE_URL": url,
        }
    environ |= env
    done = subprocess.run(
        [sys.executable, "-m", "ratatosk", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert token not in done.stdout + done.stderr
    return done


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("command", [[], ["send"], ["status"], ["templates", "list"], ["serve"],
                                     ["emulator"], ["demo"]])  # fmt: skip
def test_every_command_has_help(command: list[str]) -> None:
    done = ratatosk(*command, "--help")
    assert done.returncode == 0
    assert "usage: ratatosk" in done.stdout


def test_send_text_then_status(emulator_url: str) -> None:
    sent = ratatosk("--json", "send", "--to", RECIPIENT, "--text", "Hello from WhatsApp!",
                    url=emulator_url)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    [line] = _json_lines(sent.stdout)
    sid = str(line["sid"])
    assert sid.startswith("SM")
    status = ratatosk("--json", "status", sid, url=emulator_url)
    assert status.returncode == 0, status.stderr
    [answer] = _json_lines(status.stdout)
    assert answer["sid"] == sid
    assert answer["status"] in {"Queued", "Sending", "Sent", "Delivered", "Read"}


def test_send_template_by_name_with_variables(emulator_url: str) -> None:
    done = ratatosk("send", "--to", RECIPIENT, "--template", "order_confirmed",
                    "--var", "order_id=ORD-123", "--var", "delivery_date=2026-05-15",
                    url=emulator_url)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SM" in done.stdout


def test_send_media_with_caption_and_validity(emulator_url: str) -> None:
    done = ratatosk("--json", "send", "--to", RECIPIENT, "--media",
                    "https://example.com/product.jpg", "--caption", "Check out our new product!",
                    "--validity", "600", url=emulator_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(_json_lines(done.stdout)[0]["sid"]).startswith("MM")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--to", "5550002222", "--text", "x"], "INVALID_RECIPIENT"),
        (["--to", RECIPIENT, "--template", "order_confirmed", "--var", "order_id=1"],
         "INVALID_MESSAGE"),
        (["--to", RECIPIENT, "--template", "pending_promo"], "TEMPLATE_NOT_APPROVED"),
        (["--to", RECIPIENT, "--template", "no_such_name"], "MISSING_CONTENT_SID"),
        (["--to", RECIPIENT, "--text", "x", "--validity", "0"], "INVALID_MESSAGE"),
    ],
    ids=["recipient", "variables", "not-approved", "unknown-template", "validity"],
)  # fmt: skip
def test_refusals_exit_non_zero_with_the_code(
    emulator_url: str, args: list[str], code: str
) -> None:
    done = ratatosk("--json", "send", *args, url=emulator_url)
    assert done.returncode != 0
    assert code in done.stdout + done.stderr


def test_wrong_token_fails_without_showing_either_token(emulator_url: str) -> None:
    other = "a-wrong-token-1234567890abcdef"
    done = ratatosk("send", "--to", RECIPIENT, "--text", "x", url=emulator_url, token=other)
    assert done.returncode != 0
    assert "INVALID_CREDENTIALS" in done.stdout + done.stderr or "20003" in done.stdout
    assert TOKEN not in done.stdout + done.stderr


def test_missing_credentials_is_a_coded_failure() -> None:
    done = ratatosk("send", "--to", RECIPIENT, "--text", "x")
    assert done.returncode != 0
    assert "MISSING_CREDENTIALS" in done.stdout + done.stderr


def test_templates_list(emulator_url: str) -> None:
    done = ratatosk("--json", "templates", "list", url=emulator_url)
    assert done.returncode == 0, done.stderr
    rows = {str(r["name"]): r for r in _json_lines(done.stdout)}
    assert rows["order_confirmed"]["whatsapp_status"] == "approved"
    assert str(rows["order_confirmed"]["sid"]).startswith("HX")
    assert rows["pending_promo"]["whatsapp_status"] != "approved"
    assert "language" in rows["order_confirmed"]


def test_unreachable_twilio_is_a_coded_failure() -> None:
    done = ratatosk("send", "--to", RECIPIENT, "--text", "x",
                    url=f"http://127.0.0.1:{_free_port()}")  # fmt: skip
    assert done.returncode != 0
    assert "SEND_WHATSAPP_MESSAGE_FAILED" in done.stdout + done.stderr


def test_demo_runs_end_to_end() -> None:
    done = ratatosk("demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "forged request refused with HTTP 403" in done.stdout
    assert "OK: 4 sent" in done.stdout
    assert "Sent       signed+verified, ignored (already Read)" in done.stdout
    assert "2 late callbacks ignored" in done.stdout
    assert "1 photo fetched" in done.stdout
    assert (
        "the default policy (Twilio's media hosts only): MEDIA_REDIRECT_NOT_ALLOWED" in done.stdout
    )


def test_serve_prints_each_verified_event_as_a_json_line(emulator_url: str) -> None:
    import signal
    import urllib.request

    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    environ |= {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}
    server = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", "--json", "serve", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(port, server)
        inject = urllib.request.Request(  # noqa: S310 - our emulator on loopback
            f"{emulator_url}/_emulator/inbound",
            data=json.dumps(
                {
                    "url": f"http://127.0.0.1:{port}/webhooks/twilio/whatsapp",
                    "from": "whatsapp:+15551234567",
                    "to": SENDER,
                    "body": "Where is my order?",
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(inject, timeout=10) as answer:  # noqa: S310
            assert json.loads(answer.read())["status"] == 200
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            out, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            out, err = server.communicate()
            raise
    text = out.decode() + err.decode()
    assert TOKEN not in text
    events = [line for line in _json_lines(out.decode()) if line["event"] == "message"]
    assert len(events) == 1
    assert events[0]["from"] == "whatsapp:+15551234567"
    assert events[0]["content"] == {"type": "TextContent", "text": "Where is my order?"}


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """``ratatosk ... | head``: the closed pipe stops the command, with no traceback."""
    rows = tmp_path / "rows.csv"
    rows.write_text("to,text\n" + "12,hello\n" * 5000, encoding="utf-8")  # far over a pipe's buffer
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")} | {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_WHATSAPP_FROM": SENDER,
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{_free_port()}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", "--json", "send-batch", str(rows), "--dry-run"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = json.loads(process.stdout.readline())
    process.stdout.close()  # what head does after its lines
    with process.stderr:
        errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1
    assert first["error"]["code"] == "INVALID_RECIPIENT"
    assert "Traceback" not in errors
    assert "BrokenPipeError" not in errors


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_taken_port_says_so_with_a_code(workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = ratatosk(
            "--json", "serve", "--port", port, "--workers", workers, url="http://127.0.0.1:9"
        )
    assert done.returncode == 1, done.stdout + done.stderr
    [event] = [line for line in _json_lines(done.stdout) if line["event"] == "error"]
    assert event["error"] == {"code": "ADDRESS_UNAVAILABLE", "message": "Address already in use"}
    assert "Traceback" not in done.stderr


def test_the_emulator_on_a_taken_port_says_so_with_a_code() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = ratatosk("emulator", "--port", port)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stdout
    assert "Traceback" not in done.stderr


def test_serve_says_when_it_trusts_forwarded_headers() -> None:
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    environ |= {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}
    server = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", "serve", "--port", str(port), "--trust-forwarded"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()  # the listening line comes first
    finally:
        server.terminate()
        server.communicate(timeout=60)
    assert "public URL from trusted X-Forwarded-Proto/-Host" in banner
