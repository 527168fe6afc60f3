"""pytest plugin (testing layer): the ``fake_twilio`` and ``twilio_emulator`` fixtures.

Installed with the package (entry point ``pytest11``), so a user's tests ask
for either fixture by name with no conftest. Both fixtures are synchronous,
so they work under any async plugin (or none); a project-level fixture of the
same name takes precedence over these, as pytest's scoping rules say.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .emulator import BackgroundEmulator
from .fake import FakeTwilio


@pytest.fixture(name="fake_twilio")
def fake_twilio() -> Iterator[FakeTwilio]:
    """A fresh FakeTwilio with the default test account, closed after the test."""
    fake = FakeTwilio()
    yield fake
    fake.closed = True


@pytest.fixture(name="twilio_emulator")
def twilio_emulator() -> Iterator[BackgroundEmulator]:
    """A real emulator on a free loopback port (``url``, ``account_sid``, ``auth_token``)."""
    with BackgroundEmulator() as emulator:
        yield emulator


__all__ = ["fake_twilio", "twilio_emulator"]
