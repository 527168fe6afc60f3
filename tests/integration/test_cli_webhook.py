"""``ratatosk webhook sign`` and ``doctor`` as a user runs them: real processes, a real server.

Each case spawns ``python -m ratatosk`` with the auth token in the
environment, as a shell would. ``sign`` must produce a request that a real
``ratatosk serve`` process accepts (its headers and body, and its curl
command read back argument by argument); ``doctor`` must say that request
holds, and name the URL and the setting when a proxy changed what the server
sees. No output ever shows the token.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from secret_check import assert_no_token as check_no_token

ACCOUNT = "AC" + "6f" * 16
TOKEN = "cli-webhook-token-a1b2c3d4e5f60718"


def assert_no_token(text: str) -> None:
    check_no_token(text, ACCOUNT, TOKEN)


PATH = "/webhooks/twilio/whatsapp"
PUBLIC = "https://hooks.example.com"
INBOUND = [
    f"MessageSid=SM{'7a' * 16}",
    f"AccountSid={ACCOUNT}",
    "From=whatsapp:+15551234567",
    "To=whatsapp:+14155238886",
    "Body=Hello from the doctor",
    "NumMedia=0",
]


def ratatosk(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_"))}
    if token is not None:
        environ |= {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-m", "ratatosk", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_no_token(done.stdout + done.stderr)
    return done


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _sign(url: str, *body: str) -> dict[str, Any]:
    done = ratatosk("--json", "webhook", "sign", "--url", url, *body)
    assert done.returncode == 0, done.stdout + done.stderr
    [signed] = _events(done.stdout)
    assert signed["event"] == "signed"
    return signed


def _form_args() -> list[str]:
    return [part for field in INBOUND for part in ("--form", field)]


def _doctor(
    url: str, headers: dict[str, str], body: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    flags = [part for name, value in headers.items() for part in ("--header", f"{name}: {value}")]
    return ratatosk(*extra, "webhook", "doctor", "--url", url, *flags, "--body-file", str(body))


class TestSignThenDoctor:
    def test_a_signed_form_holds_for_its_url(self, tmp_path: Path) -> None:
        signed = _sign(PUBLIC + PATH, *_form_args())
        body = tmp_path / "body.txt"
        body.write_text(signed["body"])
        done = _doctor(PUBLIC + PATH, signed["headers"], body)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip() == f"signature holds for {PUBLIC}{PATH}"

    def test_behind_a_proxy_the_doctor_names_the_url_and_the_settings(self, tmp_path: Path) -> None:
        signed = _sign(PUBLIC + PATH, *_form_args())
        body = tmp_path / "body.txt"
        body.write_text(signed["body"])
        seen = "http://127.0.0.1:8080" + PATH
        headers = signed["headers"] | {
            "Host": "127.0.0.1:8080",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "hooks.example.com",
        }
        done = _doctor(seen, headers, body)
        assert done.returncode == 1
        assert f"signature does not hold for {seen}" in done.stdout
        assert f"it holds for: {PUBLIC}{PATH}" in done.stdout
        assert f"change: --public-url {PUBLIC} (public_url=); or --trust-forwarded" in done.stdout
        assert "error INVALID_SIGNATURE" in done.stdout
        as_json = _events(_doctor(seen, headers, body, "--json").stdout)
        assert [e["event"] for e in as_json] == ["diagnosis", "error"]
        assert as_json[0]["matched_url"] == PUBLIC + PATH
        assert as_json[0]["forwarded"] == [
            ["X-Forwarded-Proto", "https"],
            ["X-Forwarded-Host", "hooks.example.com"],
        ]
        assert as_json[1]["error"]["code"] == "INVALID_SIGNATURE"

    def test_a_signed_json_body_holds_and_a_changed_one_is_named(self, tmp_path: Path) -> None:
        payload = tmp_path / "event.json"
        payload.write_text(json.dumps({"MessageSid": "SM1", "Body": "hi"}))
        signed = _sign(PUBLIC + PATH, "--json", str(payload))
        assert "bodySHA256=" in signed["url"]
        assert signed["headers"]["Content-Type"] == "application/json"
        assert _doctor(signed["url"], signed["headers"], payload).returncode == 0
        payload.write_text(json.dumps({"MessageSid": "SM1", "Body": "hi!"}))
        changed = _doctor(signed["url"], signed["headers"], payload)
        assert changed.returncode == 1
        assert "JSON body hash (bodySHA256): mismatched" in changed.stdout

    def test_another_token_matches_no_url(self, tmp_path: Path) -> None:
        signed = _sign(PUBLIC + PATH, *_form_args())
        body = tmp_path / "body.txt"
        body.write_text(signed["body"])
        flags = ["--header", f"X-Twilio-Signature: {signed['headers']['X-Twilio-Signature']}"]
        done = ratatosk(
            "webhook", "doctor", "--url", PUBLIC + PATH, *flags, "--body-file", str(body),
            token="a-different-token-000000000000000",
        )  # fmt: skip
        assert done.returncode == 1
        assert "no plausible URL matches: the auth token" in done.stdout


class TestUsage:
    @pytest.mark.parametrize(
        "args",
        [
            ["webhook", "sign", "--url", "/relative", "--form", "a=b"],
            ["webhook", "sign", "--url", PUBLIC, "--form", "no-equals-sign"],
            ["webhook", "sign", "--url", PUBLIC, "--json", "/nonexistent/body.json"],
            ["webhook", "doctor", "--url", PUBLIC, "--header", "no colon", "--body-file", "/x"],
            ["webhook", "doctor", "--url", PUBLIC, "--body-file", "/nonexistent/body"],
        ],
    )
    def test_bad_input_is_a_usage_error(self, args: list[str]) -> None:
        done = ratatosk(*args)
        assert done.returncode == 2
        assert "error:" in done.stdout + done.stderr

    def test_without_a_token_nothing_is_signed(self) -> None:
        done = ratatosk("webhook", "sign", "--url", PUBLIC, "--form", "a=b", token=None)
        assert done.returncode == 2
        assert "TWILIO_AUTH_TOKEN" in done.stdout

    @pytest.mark.parametrize("verb", ["doctor", "sign"])
    def test_help(self, verb: str) -> None:
        done = ratatosk("webhook", verb, "--help")
        assert done.returncode == 0
        assert "usage: ratatosk webhook" in done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``ratatosk serve`` in a process of its own, on a free loopback port."""
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_"))}
    environ |= {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", "--json", "serve", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"ratatosk serve did not listen: {process.communicate()[0]}"
                ) from None
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
        assert_no_token(output)


def _post(url: str, headers: dict[str, str], body: bytes) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        connection.request("POST", f"{parts.path}?{parts.query}" if parts.query else parts.path,
                           body=body, headers=headers)  # fmt: skip
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_real_server_accepts_what_sign_builds(served: tuple[str, subprocess.Popen[str]]) -> None:
    """The printed request, and the curl command read back, are both answered 200."""
    base, _ = served
    url = base + PATH
    signed = _sign(url, *_form_args())
    assert _post(signed["url"], signed["headers"], signed["body"].encode()) == 200

    other = [f"MessageSid=SM{'7b' * 16}", *INBOUND[1:]]
    curl = ratatosk("webhook", "sign", "--url", url, "--curl",
                    *[p for f in other for p in ("--form", f)])  # fmt: skip
    argv = shlex.split(curl.stdout)
    assert argv[:5] == ["curl", "-sS", "-X", "POST", url]
    headers = dict(argv[i + 1].split(": ", 1) for i, a in enumerate(argv) if a == "-H")
    body = argv[argv.index("--data-raw") + 1]
    assert _post(url, headers, body.encode()) == 200
    forged = headers | {"X-Twilio-Signature": "AAAA" + headers["X-Twilio-Signature"][4:]}
    assert _post(url, forged, body.encode()) == 403
