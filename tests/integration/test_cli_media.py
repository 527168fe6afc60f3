"""``ratatosk media fetch`` as a user runs it: a real emulator process, real downloads.

The emulator process stores a customer's photo when it sends the inbound
webhook (to a bare loopback receiver here) and serves it behind Basic auth,
redirecting to its media CDN on ``--media-port``. The command must save the
bytes only when that CDN is allowed, refuse otherwise with the code, leave no
partial file, and never print the token.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from secret_check import assert_no_token as check_no_token

ACCOUNT = "AC" + "8e" * 16
TOKEN = "cli-media-token-0f1e2d3c4b5a6978"


def assert_no_token(text: str) -> None:
    check_no_token(text, ACCOUNT, TOKEN)


PHOTO = bytes(range(256)) * 40


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Accept(http.server.BaseHTTPRequestHandler):
    """A webhook that takes everything: the emulator needs someone to deliver to."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[str, int, list[str]]]:
    port, media_port = _free_port(), _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "ratatosk", "emulator", "--port", str(port),
         "--media-port", str(media_port), "--account-sid", ACCOUNT, "--auth-token", TOKEN],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    banner: list[str] = []
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", media_port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(process.communicate()[0]) from None
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", media_port, banner
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
        banner.append(output)
        assert_no_token(output)
        assert f"media CDN http://127.0.0.1:{media_port}" in output


@pytest.fixture(scope="module")
def media_url(emulator: tuple[str, int, list[str]]) -> Iterator[str]:
    """The Media URL of a photo a customer sent, as the webhook carried it."""
    base, _, _ = emulator
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        photo = {"content_type": "Image/PNG", "data_base64": base64.b64encode(PHOTO).decode()}
        body = json.dumps({
            "url": f"http://127.0.0.1:{receiver.server_address[1]}/webhooks/twilio/whatsapp",
            "from": "whatsapp:+15551234567",
            "to": "whatsapp:+14155238886",
            "media": [photo],
        })  # fmt: skip
        connection = http.client.HTTPConnection(base.split("://", 1)[1], timeout=10)
        connection.request("POST", "/_emulator/inbound", body=body,
                           headers={"Content-Type": "application/json"})  # fmt: skip
        answer = json.loads(connection.getresponse().read())
        connection.close()
        assert answer["status"] == 200, answer
        [url] = answer["media_urls"]
        yield url
    finally:
        receiver.shutdown()
        thread.join()
        receiver.server_close()


def ratatosk(base: str, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_"))}
    environ |= {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_API_BASE_URL": base,
    }
    done = subprocess.run(
        [sys.executable, "-m", "ratatosk", *args],
        env=environ, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert_no_token(done.stdout + done.stderr)
    return done


def test_the_photo_is_saved_when_the_cdn_is_allowed(
    emulator: tuple[str, int, list[str]], media_url: str, tmp_path: Path
) -> None:
    base, media_port, _ = emulator
    target = tmp_path / "photo.png"
    done = ratatosk(base, "--json", "media", "fetch", media_url, "--out", str(target),
                    "--allow-host", f"127.0.0.1:{media_port}")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [event] = [json.loads(line) for line in done.stdout.splitlines()]
    assert event == {
        "event": "media",
        "content_type": "image/png",
        "size": len(PHOTO),
        "path": str(target),
    }
    assert target.read_bytes() == PHOTO


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ([], "MEDIA_REDIRECT_NOT_ALLOWED"),  # Twilio's media hosts only, by default
        (["--max-bytes", "100", "--allow-host", "{media}"], "MEDIA_TOO_LARGE"),
    ],
)
def test_a_refused_fetch_says_why_and_leaves_no_file(
    emulator: tuple[str, int, list[str]],
    media_url: str,
    tmp_path: Path,
    extra: list[str],
    code: str,
) -> None:
    base, media_port, _ = emulator
    target = tmp_path / "photo.png"
    flags = [e.format(media=f"127.0.0.1:{media_port}") for e in extra]
    done = ratatosk(base, "media", "fetch", media_url, "--out", str(target), *flags)
    assert done.returncode == 1
    assert f"error {code}:" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_url_off_the_api_origin_is_never_requested(
    emulator: tuple[str, int, list[str]], media_url: str, tmp_path: Path
) -> None:
    base, media_port, _ = emulator
    elsewhere = media_url.replace(base, f"http://127.0.0.1:{media_port}")
    done = ratatosk(base, "media", "fetch", elsewhere, "--out", str(tmp_path / "x"))
    assert done.returncode == 1
    assert "error MEDIA_URL_NOT_ALLOWED:" in done.stdout


def test_media_fetch_has_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ratatosk", "media", "fetch", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert "usage: ratatosk media fetch" in done.stdout
    assert "mms.twiliocdn.com" in done.stdout
