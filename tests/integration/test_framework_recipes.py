"""The README's Frameworks recipes, run as written against the emulator.

Each recipe's files are the README's own blocks (the ones that open with
``# name.py``), saved under those names. FastAPI and Django run under
``python -m uvicorn`` with the command the README shows (on a free port
instead of 8000): their routes send through the emulator and their mounted
webhook app receives the emulator's signed inbound messages. Flask's view
runs under Flask's test client, from several threads. What the test adds is
only what a project has already: Django's settings module, and the
emulator's ``TWILIO_*`` variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from ratatosk.testing import BackgroundEmulator
from ratatosk.twilio.signature import compute_signature
from readme_text import blocks, files, section
from secret_check import assert_no_token
from webhook_apps import Uvicorn, http_post, post_json

CUSTOMER = "whatsapp:+15551234567"
BUSINESS = "whatsapp:+14155238886"
PATH = "/twilio/webhooks/twilio/whatsapp"

DJANGO_SETTINGS = """
SECRET_KEY = "recipe-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
"""


@pytest.fixture
def emulator() -> Iterator[BackgroundEmulator]:
    with BackgroundEmulator() as running:
        yield running


def _environ(emulator: BackgroundEmulator) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "REDIS_"))}
    return environ | {
        "TWILIO_ACCOUNT_SID": emulator.account_sid,
        "TWILIO_AUTH_TOKEN": emulator.auth_token,
        "TWILIO_API_BASE_URL": emulator.url,
        "TWILIO_WHATSAPP_FROM": BUSINESS,
        "PYTHONUNBUFFERED": "1",  # the handlers' prints reach the test as they happen
    }


def _recipe(heading: str, tmp_path: Path) -> list[str]:
    """Save the Frameworks files a recipe needs; the ``uvicorn`` command its section shows."""
    for name, code in files(section("## Frameworks")).items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    commands = [
        shlex.split(line)
        for block in blocks(section(heading), "bash")
        for line in block.splitlines()
        if line.startswith("uvicorn ")
    ]
    assert len(commands) == 1, f"{heading!r} shows no single uvicorn command"
    arguments = commands[0][1:]
    port = arguments.index("--port") + 1
    arguments[port] = "0"  # a free port, not the README's 8000
    return [*arguments, "--host", "127.0.0.1"]


@contextlib.contextmanager
def served(arguments: list[str], tmp_path: Path, environ: dict[str, str]) -> Iterator[Uvicorn]:
    server = Uvicorn(arguments, tmp_path, environ)
    try:
        assert server.url, "".join(server.stderr)
        yield server
    finally:
        server.close()


def _stop(server: Uvicorn) -> str:
    code, _ = server.stop()
    log = "".join(server.stderr)
    assert code in {0, -signal.SIGTERM}, log
    assert "Application shutdown complete." in log
    return log


def _inbound(emulator: BackgroundEmulator, server: Uvicorn, text: str) -> None:
    """The emulator sends a signed inbound message to the mounted webhook; the handler prints it."""
    answer = post_json(
        emulator.url + "/_emulator/inbound",
        {"url": server.url + PATH, "from": CUSTOMER, "to": BUSINESS, "body": text},
    )
    assert answer["status"] == 200, answer
    line = server.lines.get(timeout=60)  # a hang guard
    assert line.startswith("received SM")
    assert f"from {CUSTOMER}" in line
    assert text in line


def _forged(emulator: BackgroundEmulator, server: Uvicorn) -> int:
    """Signed for the URL without its mount prefix: the prefix is part of what Twilio signs."""
    form = {"MessageSid": "SM" + "3f" * 16, "AccountSid": emulator.account_sid}
    form |= {"From": CUSTOMER, "To": BUSINESS, "Body": "unprefixed", "NumMedia": "0"}
    unprefixed = server.url + PATH.removeprefix("/twilio")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": compute_signature(emulator.auth_token, unprefixed, form),
    }
    return http_post(server.url + PATH, urlencode(form).encode(), headers)[0]


def test_fastapi_recipe_sends_from_a_route_and_receives_on_the_mount(
    emulator: BackgroundEmulator, tmp_path: Path
) -> None:
    arguments = _recipe("### FastAPI", tmp_path)
    with served(arguments, tmp_path, _environ(emulator)) as server:
        sent = _json_post(server.url + "/notify", {"to": CUSTOMER, "text": "Your order shipped"})
        refused = _json_post(server.url + "/notify", {"to": "whatsapp:+1", "text": "nobody"})
        _inbound(emulator, server, "Thanks!")
        forged = _forged(emulator, server)
        log = _stop(server)
    status, body = sent
    assert status == 200
    assert body["sid"].startswith("SM")
    assert body["status"] == "Queued"
    assert refused[0] == 422
    assert refused[1]["code"] in {"INVALID_RECIPIENT", "INVALID_WHATSAPP_NUMBER"}
    assert forged == 403
    stored = emulator.control(lambda model: model.outbound)
    assert [(m.to, m.body) for m in stored] == [(CUSTOMER, "Your order shipped")]
    assert_no_token(log, emulator.account_sid, emulator.auth_token)


def test_django_recipe_sends_from_a_plain_view_and_receives_through_asgi(
    emulator: BackgroundEmulator, tmp_path: Path
) -> None:
    arguments = _recipe("### Django", tmp_path)
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "mysite" / "settings.py").write_text(DJANGO_SETTINGS, encoding="utf-8")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with served(arguments, tmp_path, _environ(emulator)) as server:
        confirm = server.url + "/orders/ORD-7/confirm"
        sent = http_post(confirm, urlencode({"to": CUSTOMER}).encode(), form)
        refused = http_post(confirm, urlencode({"to": "whatsapp:+1"}).encode(), form)
        _inbound(emulator, server, "Is it confirmed?")
        forged = _forged(emulator, server)
        log = _stop(server)
    assert sent[0] == 202
    body = json.loads(sent[1])
    assert (body["sid"][:2], body["status"]) == ("SM", "Queued")
    assert refused[0] == 422
    assert forged == 403
    [stored] = emulator.control(lambda model: model.outbound)
    assert stored.to == CUSTOMER
    assert stored.content_sid is not None  # the order_confirmed template
    assert_no_token(log, emulator.account_sid, emulator.auth_token)


FLASK_DRIVER = """
import json
import threading

from app import app

answers = []


def post(n):
    response = app.test_client().post("/notify", data={{"to": "{to}", "text": f"flask {{n}}"}})
    answers.append([response.status_code, response.get_json()])


threads = [threading.Thread(target=post, args=(n,)) for n in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
refused = app.test_client().post("/notify", data={{"to": "whatsapp:+1", "text": "nobody"}})
print(json.dumps({{"sent": answers, "refused": [refused.status_code, refused.get_json()]}}))
"""


def test_flask_recipe_sends_from_a_view_called_by_several_threads(
    emulator: BackgroundEmulator, tmp_path: Path
) -> None:
    for name, code in files(section("## Frameworks")).items():  # whatsapp.py and app.py too
        (tmp_path / name).write_text(code, encoding="utf-8")
    (tmp_path / "driver.py").write_text(FLASK_DRIVER.format(to=CUSTOMER), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "error", "driver.py"],
        cwd=tmp_path,
        env=_environ(emulator),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert len(out["sent"]) == 6
    assert all(status == 202 and body["status"] == "Queued" for status, body in out["sent"])
    assert out["refused"][0] == 422
    stored = emulator.control(lambda model: model.outbound)
    assert sorted(m.body for m in stored) == sorted(f"flask {n}" for n in range(6))


def _json_post(url: str, data: dict[str, str]) -> tuple[int, dict[str, str]]:
    status, body = http_post(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)
