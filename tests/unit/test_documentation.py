"""The documented tables hold in code, and the README names every code the connector returns.

The connector's documentation tables (error codes, provider-code map,
schema, settings, message properties) are the project's own data in
``tests/data/documented_tables.json``: if the code drifts from a row, a test
here names the row. The README's error-code table is checked against the
source itself, so a new code cannot ship undocumented.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import ratatosk
from ratatosk import ContentType, EndpointType, MessagingErrorCodes
from ratatosk.domain.errors import catalog
from ratatosk.domain.schema import AuthenticationType, Capability, DataType
from ratatosk.twilio import TwilioChannelSchemas, TwilioErrorCodes
from ratatosk.twilio.errors import PROVIDER_CODE_MAP, error, map_provider_code

TABLES = Path(__file__).resolve().parents[1] / "data" / "documented_tables.json"
README = Path(__file__).resolve().parents[2] / "README.md"
SOURCE = Path(ratatosk.__file__).resolve().parent
SCHEMA = TwilioChannelSchemas.TWILIO_WHATSAPP
CODES = catalog(MessagingErrorCodes) | catalog(TwilioErrorCodes)


def _read(path: Path) -> str:
    if not path.exists():
        pytest.fail(f"{path} is missing: it is part of the repository, restore it")
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tables() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_read(TABLES))
    return document


def _type_holds(documented: str, actual: DataType) -> bool:
    # The documentation types URLs as strings; the schema narrows them to absolute URLs.
    return actual is DataType(documented) or (documented == "string" and actual is DataType.URL)


class TestErrorCodes:
    """Every documented code exists verbatim, in its documented domain."""

    def test_every_twilio_code_exists_in_the_twilio_domain(self, tables: dict[str, Any]) -> None:
        """Each row of the Error codes table is a TwilioErrorCodes constant built in "Twilio"."""
        documented = tables["twilio_error_codes"]
        assert len(documented["codes"]) == 12  # the table's rows; fewer would weaken the check
        assert documented["domain"] == TwilioErrorCodes.DOMAIN
        for code in documented["codes"]:
            assert getattr(TwilioErrorCodes, code) == code
            assert error(code, "documented").domain == documented["domain"], code

    def test_every_provider_code_mapping(self, tables: dict[str, Any]) -> None:
        """Each documented Twilio code maps to its framework code; any other to the fallback."""
        documented = tables["provider_code_map"]
        assert documented["mapped"]
        for twilio_code, framework in documented["mapped"].items():
            assert map_provider_code(int(twilio_code), 400) == framework, twilio_code
        unmapped = 30008
        assert unmapped not in PROVIDER_CODE_MAP
        assert map_provider_code(unmapped, 400) == documented["other"]
        assert map_provider_code(None, 400) == documented["other"]

    def test_troubleshooting_codes_exist_and_the_alias_holds(self, tables: dict[str, Any]) -> None:
        """The Troubleshooting table's codes are kernel codes; RATE_LIMIT_EXCEEDED is an alias."""
        documented = tables["troubleshooting_codes"]
        assert documented["codes"]
        assert documented["domain"] == MessagingErrorCodes.DOMAIN
        for code in documented["codes"]:
            assert getattr(MessagingErrorCodes, code) == code
            assert error(code, "documented").domain == documented["domain"], code
        assert MessagingErrorCodes.RATE_LIMIT_EXCEEDED == MessagingErrorCodes.RATE_LIMITED


class TestSchema:
    """The Schema, settings and message-property tables describe TWILIO_WHATSAPP."""

    def test_schema_table(self, tables: dict[str, Any]) -> None:
        """Provider, type, version, capabilities, content types, endpoint and auth all hold."""
        documented = tables["schema"]
        assert SCHEMA.provider == documented["provider"] == "Twilio"
        assert SCHEMA.channel_type == documented["type"] == "WhatsApp"
        assert SCHEMA.version == documented["version"] == "1.0.0"
        assert documented["capabilities"]
        for name in documented["capabilities"]:
            flag = Capability[re.sub(r"(?<!^)([A-Z])", r"_\1", name).upper()]
            assert SCHEMA.supports(flag), name
        assert {ContentType(n) for n in documented["content_types"]} <= SCHEMA.content_types
        assert [(e.type, e.can_send, e.can_receive) for e in SCHEMA.endpoints] == [
            (EndpointType(e["type"]), e["send"], e["receive"]) for e in documented["endpoints"]
        ]
        auth = documented["authentication"]
        assert SCHEMA.authentication.type is AuthenticationType(auth["type"])
        assert SCHEMA.authentication.type is AuthenticationType.BASIC
        assert (SCHEMA.authentication.principal, SCHEMA.authentication.credential) == (
            auth["principal"],
            auth["credential"],
        )

    def test_settings_tables(self, tables: dict[str, Any]) -> None:
        """Required settings are required, optional ones are not, each of its documented type."""
        documented = tables["settings"]
        assert documented["required"]
        assert documented["optional"]
        for section, required in (("required", True), ("optional", False)):
            for name, type_name in documented[section].items():
                spec = SCHEMA.parameter(name)
                assert spec is not None, name
                assert spec.required is required, name
                assert _type_holds(type_name, spec.type), name
        for name in documented["sensitive"]:
            spec = SCHEMA.parameter(name)
            assert spec is not None, name
            assert spec.sensitive, name

    def test_message_properties_table(self, tables: dict[str, Any]) -> None:
        """Every documented message property is declared with its documented type."""
        declared = {p.name: p for p in SCHEMA.message_properties}
        assert tables["message_properties"]
        for name, type_name in tables["message_properties"].items():
            assert name in declared, name
            assert _type_holds(type_name, declared[name].type), name


def _readme_error_section() -> str:
    text = _read(README)
    start = text.index("### Results and error codes")
    return text[start : text.index("\n## ", start)]


def _codes_the_source_can_return() -> set[str]:
    """Catalog codes the package names outside the catalogs' own definitions.

    A code is returned only where the source names it (``MessagingErrorCodes.X``,
    an alias such as ``_M.X``, or a quoted literal), so this is a superset of
    what the connector can return; the catalog modules' ``X: Final = "X"``
    lines are definitions, not uses, and are left out of the literal scan.
    """
    named: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        named.update(re.findall(r"\.([A-Z][A-Z0-9_]+)\b", text))
        if path.name != "errors.py":
            named.update(re.findall(r"[\"']([A-Z][A-Z0-9_]+)[\"']", text))
    return named & CODES


class TestReadmeErrorCodes:
    """The README's Results and error codes table is complete and invents nothing."""

    def test_the_table_names_every_code_the_connector_can_return(self) -> None:
        """A code the source uses but the table lacks fails here, by name."""
        section = _readme_error_section()
        rows = [line for line in section.splitlines() if line.startswith("| `")]
        tabled = {code for row in rows for code in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
        returned = _codes_the_source_can_return()
        assert returned, "the source scan found no codes: the scan is broken"
        assert sorted(returned - tabled) == []
        assert sorted(tabled - returned) == []  # no row promises a code nothing returns

    def test_the_codes_never_returned_are_named_as_such(self) -> None:
        """Every catalog code the source never uses is named in the section's prose."""
        section = _readme_error_section()
        prose = "\n".join(line for line in section.splitlines() if not line.startswith("|"))
        unused = CODES - _codes_the_source_can_return()
        assert sorted(c for c in unused if f"`{c}`" not in prose) == []
