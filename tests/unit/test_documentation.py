"""The connector documentation's tables, read from the document itself, hold in code.

If the shared reference changes (a code added, a mapping moved), these fail
and say which line of the documentation the code no longer matches.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ratatosk import ContentType, EndpointType, MessagingErrorCodes
from ratatosk.domain.schema import AuthenticationType, Capability
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes
from ratatosk.twilio.errors import map_provider_code

DOC = Path(__file__).resolve().parents[3] / "shared" / "reference" / "connector-doc.md"
SCHEMA = TwilioChannelSchemas.TWILIO_WHATSAPP


def _doc() -> str:
    if not DOC.exists():
        pytest.fail(f"{DOC} is missing: clone the repository beside ../shared")
    return DOC.read_text(encoding="utf-8")


def _section(title: str) -> str:
    text = _doc()
    start = text.index(title)
    following = text.find("\n## ", start + len(title))
    return text[start : following if following != -1 else None]


def _rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= {"-", " ", ":"}:
            rows.append(cells)
    return rows[1:]  # drop the header


def test_every_twilio_error_code_in_the_table_exists_verbatim() -> None:
    table = _rows(_section("## Error codes").split("### Original provider codes")[0])
    codes = [row[0] for row in table]
    assert len(codes) == 12
    for code in codes:
        assert getattr(TwilioErrorCodes, code) == code
    assert TwilioErrorCodes.DOMAIN == "Twilio"


def test_every_provider_code_mapping_in_the_table() -> None:
    table = _rows(_section("### Original provider codes"))
    for twilio_code, framework in table:
        if twilio_code == "Other":
            assert map_provider_code(30008, 400) == framework
        else:
            assert map_provider_code(int(twilio_code), 400) == framework


def test_troubleshooting_codes_exist_and_the_alias_holds() -> None:
    table = _rows(_section("## Troubleshooting"))
    named = [row[0] for row in table if re.fullmatch(r"[A-Z_]+", row[0])]
    assert named == ["INVALID_RECIPIENT", "RATE_LIMITED"]
    for code in named:
        assert getattr(MessagingErrorCodes, code) == code
    assert MessagingErrorCodes.RATE_LIMIT_EXCEEDED == MessagingErrorCodes.RATE_LIMITED


def test_schema_table() -> None:
    table = {row[0]: row[1] for row in _rows(_section("## Schema"))}
    assert SCHEMA.provider == table["Provider"] == "Twilio"
    assert SCHEMA.channel_type == table["Type"] == "WhatsApp"
    assert SCHEMA.version == table["Version"] == "1.0.0"
    for name in re.findall(r"\w+", table["Capabilities"]):
        flag = Capability[re.sub(r"(?<!^)([A-Z])", r"_\1", name).upper()]
        assert SCHEMA.supports(flag), name
    documented = {ContentType(n) for n in re.findall(r"\w+", table["Content types"])}
    assert documented <= SCHEMA.content_types
    [endpoint] = SCHEMA.endpoints
    assert endpoint.type is EndpointType.PHONE_NUMBER
    assert (endpoint.can_send, endpoint.can_receive) == (True, True)
    assert SCHEMA.authentication.type is AuthenticationType.BASIC
    assert (SCHEMA.authentication.principal, SCHEMA.authentication.credential) == (
        "AccountSid",
        "AuthToken",
    )


def test_settings_tables() -> None:
    required = _rows(_section("## Required settings").split("### Optional settings")[0])
    optional = _rows(_section("### Optional settings"))
    for row in required:
        spec = SCHEMA.parameter(row[0])
        assert spec is not None
        assert spec.required, row[0]
    assert SCHEMA.parameter("AuthToken").sensitive  # type: ignore[union-attr]
    for row in optional:
        spec = SCHEMA.parameter(row[0])
        assert spec is not None
        assert not spec.required, row[0]
