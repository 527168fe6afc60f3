"""The pytest plugin the package registers, as a user's project meets it.

Each case runs pytest in a subprocess on a throwaway project that has no
conftest: the fixtures must arrive through the ``pytest11`` entry point alone.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

USERS_TESTS = """
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ratatosk import MessageBuilder
from ratatosk.testing import FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector


def create(emulator, **form):
    request = urllib.request.Request(
        f"{emulator.url}/2010-04-01/Accounts/{emulator.account_sid}/Messages.json",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(
            f"{emulator.account_sid}:{emulator.auth_token}".encode()).decode()},
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_fake(fake_twilio):
    assert isinstance(fake_twilio, FakeTwilio)
    assert fake_twilio.outbox == []


def test_emulator_from_a_sync_test(twilio_emulator):
    Path("url.txt").write_text(twilio_emulator.url)
    assert twilio_emulator.auth_token not in repr(twilio_emulator)
    twilio_emulator.fail_next(21610)
    status, body = create(twilio_emulator, To="whatsapp:+15550002222",
                          From="whatsapp:+14155238886", Body="hi")
    assert (status, body["code"]) == (400, 21610)
    twilio_emulator.fail_all(20429, 429)
    status, body = create(twilio_emulator, To="whatsapp:+15550002222",
                          From="whatsapp:+14155238886", Body="hi")
    assert (status, body["code"]) == (429, 20429)
    twilio_emulator.clear_failures()
    status, body = create(twilio_emulator, To="whatsapp:+15550002222",
                          From="whatsapp:+14155238886", Body="hi")
    assert status == 201
    assert twilio_emulator.control(lambda model: model.stored_count) == 1


@pytest.mark.asyncio
async def test_emulator_from_an_async_test(twilio_emulator):
    settings = twilio_emulator.settings().set_parameter("FromNumber", "whatsapp:+14155238886")
    async with TwilioWhatsAppConnector(TwilioChannelSchemas.TWILIO_WHATSAPP, settings) as c:
        message = MessageBuilder().to_phone("whatsapp:+15550002222").with_text("hi").build()
        sent = await c.send_message(message)
    assert sent.successful, sent.error
    assert twilio_emulator.model.message(sent.value.provider_message_id) is not None
"""


def run_users_project(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n",
        encoding="utf-8",
    )
    (tmp_path / "test_users_code.py").write_text(USERS_TESTS, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_fixtures_reach_a_project_without_conftest(tmp_path: Path) -> None:
    """fake_twilio and twilio_emulator work in sync and async tests through the entry point."""
    done = run_users_project(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_emulator_is_stopped_after_the_test(tmp_path: Path) -> None:
    """Nothing listens on the emulator's port once the test that used it is over."""
    done = run_users_project(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    port = urlsplit((tmp_path / "url.txt").read_text(encoding="utf-8")).port
    assert port is not None
    with pytest.raises(ConnectionRefusedError), socket.socket() as probe:
        probe.connect(("127.0.0.1", port))
