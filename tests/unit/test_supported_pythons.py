"""The Pythons the package claims are the Pythons ``make test-pythons`` proves.

pyproject.toml says which Pythons a user may install on (requires-python, the
Trove classifiers); the Makefile's PYTHONS is what is actually tested there;
ruff's and mypy's targets are the floor the daily checks hold the code to. A
classifier added without its test run, or a floor raised in one place only,
would promise what nothing checks: these tests refuse the drift.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CLASSIFIER = re.compile(r"Programming Language :: Python :: (3\.\d+)$")


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _minor(version: str) -> int:
    major, minor = version.split(".")
    assert major == "3", version
    return int(minor)


def _classified() -> list[int]:
    classifiers: list[str] = _pyproject()["project"]["classifiers"]
    return sorted(_minor(m[1]) for c in classifiers if (m := CLASSIFIER.match(c)))


def _makefile_pythons() -> list[int]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    found = re.search(r"^PYTHONS := (.+)$", text, re.M)
    assert found is not None, "the Makefile names no PYTHONS for make test-pythons"
    return sorted(_minor(v) for v in found[1].split())


def test_every_classified_python_is_tested_by_make_test_pythons() -> None:
    """Advertising a Python on PyPI is a promise only test-pythons keeps."""
    assert _classified() == _makefile_pythons()


def test_the_classifiers_start_at_requires_python_and_leave_no_gap() -> None:
    """A user on the floor, or on any Python between it and the newest, is covered."""
    floor = re.fullmatch(r">=(3\.\d+)", _pyproject()["project"]["requires-python"])
    assert floor is not None, "requires-python is not a plain '>=3.X' floor"
    minors = _classified()
    assert minors == list(range(_minor(floor[1]), minors[-1] + 1))


def test_ruff_and_mypy_hold_the_code_to_the_floor() -> None:
    """Code that needs a newer Python than the floor fails the daily checks, not a user."""
    config = _pyproject()
    floor = config["project"]["requires-python"].removeprefix(">=")
    assert config["tool"]["mypy"]["python_version"] == floor
    assert config["tool"]["ruff"]["target-version"] == "py3" + str(_minor(floor))
