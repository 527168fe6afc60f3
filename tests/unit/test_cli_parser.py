"""The ``ratatosk`` command line's one ``--json`` option, before or after the command.

Parsing only (no command runs): the option is declared once and shared, so
these pin the argparse behaviour that sharing relies on.
"""

from __future__ import annotations

import json

import pytest

from ratatosk.cli import _parser, main

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


class TestBadCommandLines:
    """argparse's own refusals follow ``--json`` too: a script reads why, exit 2."""

    @pytest.mark.parametrize(
        ("argv", "says"),
        [
            (["--json", "send", "--to", "x"], "one of the arguments --text --template"),
            (["send", "--json", "--text", "hi"], "the following arguments are required: --to"),
            (["--json", "status", "SM1", "--bogus"], "unrecognized arguments: --bogus"),
            (["--json", "nosuch"], "invalid choice: 'nosuch'"),
        ],
    )
    def test_with_json_the_refusal_is_one_usage_event(
        self, argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(argv) == 2
        out, err = capsys.readouterr()
        [line] = out.splitlines()
        event = json.loads(line)
        assert event["event"] == "usage"
        assert says in event["message"]
        assert err == ""

    def test_without_json_argparse_speaks_as_usual(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["send", "--to", "x"]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert "error: one of the arguments --text --template --media is required" in err
