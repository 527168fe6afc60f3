"""The ``ratatosk`` command line's one ``--json`` option, before or after the command.

Parsing only (no command runs): the option is declared once and shared, so
these pin the argparse behaviour that sharing relies on.
"""

from __future__ import annotations

import pytest

from ratatosk.cli import _parser

COMMANDS = [
    ["send", "--to", "whatsapp:+15550002222", "--text", "hi"],
    ["status", "SM" + "0" * 32],
    ["templates", "list"],
    ["send-batch", "rows.csv"],
    ["serve"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
class TestJsonOption:
    """``--json`` works on either side of the command name; absent means text."""

    def test_before_the_command(self, command: list[str]) -> None:
        """The top-level flag survives the command's own parser."""
        assert _parser().parse_args(["--json", *command]).json is True

    def test_after_the_command(self, command: list[str]) -> None:
        """Each command accepts the same flag."""
        assert _parser().parse_args([*command, "--json"]).json is True

    def test_absent_is_not_json(self, command: list[str]) -> None:
        """Without the flag nothing sets it, and main() reads that as text output."""
        assert getattr(_parser().parse_args(command), "json", False) is False
