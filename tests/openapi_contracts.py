"""Twilio's OpenAPI contracts as the tests read them: from ``tests/contracts/``, never from outside.

One loader for the ``conftest`` fixtures (openapi-core specs) and for the wire
properties (which draw enums from the raw document inside strategies, where
fixtures cannot reach). A missing file fails the test that needed it: a skip
would let the suite go green without ever checking the wire.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

CONTRACTS = Path(__file__).resolve().parent / "contracts"
MESSAGING = "twilio_api_v2010_messaging.openapi.json"
CONTENT = "twilio_content_v1.openapi.json"


@functools.cache
def load_contract(name: str) -> dict[str, Any]:
    """The parsed contract document (cached: the files are large and never change in a run)."""
    path = CONTRACTS / name
    if not path.exists():
        pytest.fail(f"contract file {path} is missing: restore it (see tests/contracts/README.md)")
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document
