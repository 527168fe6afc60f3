"""Every ratatosk name the README shows can be imported from where the README says.

A user copies ``from ratatosk.twilio import SendPolicy`` from the README; if
the name moved or was never exported, this fails instead of the user's code.
Names imported from a module with ``__all__`` must be in it: the README
shows only the public surface.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
TEXT = README.read_text(encoding="utf-8")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TEXT, re.DOTALL)


def _imports() -> list[tuple[str, str]]:
    """(module, name) for every ``from ratatosk... import name`` in the README's code."""
    found = []
    for block in _python_blocks():
        for node in ast.walk(ast.parse(block)):  # parses top-level await and return too
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ratatosk"):
                found += [(str(node.module), alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(a.name, "") for a in node.names if a.name.startswith("ratatosk")]
    return found


def _dotted_names() -> list[str]:
    """``ratatosk.a.b.Name`` written in the README's prose, in backticks."""
    return sorted(set(re.findall(r"`(ratatosk(?:\.\w+)+)`", TEXT)))


def test_the_readme_imports_something() -> None:
    """The parsers find the README's imports (a guard against a silently empty check)."""
    modules = {module for module, _ in _imports()}
    assert {"ratatosk", "ratatosk.twilio", "ratatosk.adapters.http11_server"} <= modules
    assert ("ratatosk.twilio", "SendPolicy") in _imports()


@pytest.mark.parametrize(("module", "name"), sorted(set(_imports())))
def test_every_imported_name_is_public(module: str, name: str) -> None:
    imported = importlib.import_module(module)
    if not name:
        return
    assert hasattr(imported, name), f"README: `from {module} import {name}` fails"
    public = getattr(imported, "__all__", None)
    assert public is None or name in public, f"{module}.{name} is not in {module}.__all__"


@pytest.mark.parametrize("dotted", _dotted_names())
def test_every_dotted_name_resolves(dotted: str) -> None:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            assert hasattr(target, attribute), f"README names {dotted}, which does not exist"
            target = getattr(target, attribute)
        return
    pytest.fail(f"README names {dotted}, which does not exist")
