"""Test support for users of ratatosk (testing layer): fakes, an emulator, strategies, fixtures.

* ``fake`` :class:`FakeTwilio`, Twilio in process over the emulator's model;
* ``emulator`` :class:`BackgroundEmulator`, the HTTP emulator on loopback;
* ``strategies`` Hypothesis strategies (Hypothesis imported lazily);
* ``plugin`` the pytest plugin the package registers: the ``fake_twilio``
  and ``twilio_emulator`` fixtures.

Importing this package needs neither pytest nor Hypothesis: ``fake_twilio``
is loaded from the plugin only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..adapters.clock import ManualClock
from ..emulator.model import InboundMedia
from .emulator import BackgroundEmulator
from .fake import FakeTemplateCatalog, FakeTwilio, OutboxRecord
from .strategies import (
    inbound_forms,
    invalid_whatsapp_numbers,
    message_texts,
    whatsapp_numbers,
)


def __getattr__(name: str) -> Any:
    # ``from ratatosk.testing import fake_twilio`` predates the plugin; it stays
    # importable, and is the plugin's own fixture, so pytest sees one definition.
    if name in {"fake_twilio", "twilio_emulator"}:
        return getattr(importlib.import_module(f"{__name__}.plugin"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackgroundEmulator",
    "FakeTemplateCatalog",
    "FakeTwilio",
    "InboundMedia",
    "ManualClock",
    "OutboxRecord",
    "fake_twilio",
    "inbound_forms",
    "invalid_whatsapp_numbers",
    "message_texts",
    "twilio_emulator",
    "whatsapp_numbers",
]
