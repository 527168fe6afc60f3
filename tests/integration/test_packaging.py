"""What ``python -m build`` makes is what users need: a wheel and an sdist that install and run.

The build is of a copy of this working tree (``distribution`` fixture); the
wheel is installed in a virtual environment with nothing else in it, as
``pip install ratatosk-twilio`` would, and its ``ratatosk`` command runs the
demo there. The file lists are read from the archives themselves.
"""

from __future__ import annotations

import email
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from distribution import METADATA, ROOT, Distribution, FreshEnvironment

VERSION = METADATA["version"]
#: The test support users import, and the plugin their pytest loads by entry point.
TEST_SUPPORT = [f"ratatosk/testing/{name}.py" for name in
                ("__init__", "fake", "emulator", "strategies", "plugin")]  # fmt: skip


def _wheel_names(distribution: Distribution) -> list[str]:
    with zipfile.ZipFile(distribution.wheel) as wheel:
        return wheel.namelist()


def _wheel_text(distribution: Distribution, suffix: str) -> str:
    with zipfile.ZipFile(distribution.wheel) as wheel:
        [name] = [n for n in wheel.namelist() if n.endswith(f".dist-info/{suffix}")]
        return wheel.read(name).decode("utf-8")


class TestBuild:
    def test_build_makes_a_wheel_and_an_sdist_of_this_version(
        self, distribution: Distribution
    ) -> None:
        """One pure-Python wheel and one sdist, named for the project and its version."""
        assert distribution.wheel.name == f"ratatosk_twilio-{VERSION}-py3-none-any.whl"
        assert distribution.sdist.name == f"ratatosk_twilio-{VERSION}.tar.gz"

    def test_the_wheel_ships_the_package_and_its_test_support_not_the_tests(
        self, distribution: Distribution
    ) -> None:
        """ratatosk/ (typed, with ratatosk.testing) and its metadata; nothing of tests/."""
        names = _wheel_names(distribution)
        assert {name.split("/")[0] for name in names} == {
            "ratatosk",
            f"ratatosk_twilio-{VERSION}.dist-info",
        }
        assert set(TEST_SUPPORT) <= set(names)
        assert "ratatosk/py.typed" in names
        assert not [n for n in names if re.search(r"(^|/)(tests?|conftest\.py)(/|$)", n)]
        assert not [n for n in names if re.search(r"(^|/)test_[^/]*\.py$", n)]
        package = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src").rglob("*.py")}
        assert {n for n in names if n.endswith(".py")} == package

    def test_the_wheel_declares_the_command_and_the_pytest_plugin(
        self, distribution: Distribution
    ) -> None:
        """Installing the wheel gives ``ratatosk`` and registers the fixtures with pytest."""
        entry_points = _wheel_text(distribution, "entry_points.txt")
        assert "[console_scripts]\nratatosk = ratatosk.cli:main" in entry_points
        assert "[pytest11]\nratatosk = ratatosk.testing.plugin" in entry_points

    def test_the_metadata_says_what_the_package_is(self, distribution: Distribution) -> None:
        """License, classifiers, Python versions, extras and the README as description."""
        metadata = email.message_from_string(_wheel_text(distribution, "METADATA"))
        assert metadata["License-Expression"] == "MIT"
        assert metadata["Requires-Python"] == ">=3.11"
        classifiers = metadata.get_all("Classifier") or []
        assert "Typing :: Typed" in classifiers
        assert "Framework :: Pytest" in classifiers
        assert {"cli", "redis"} <= set(metadata.get_all("Provides-Extra") or [])
        assert metadata["Description-Content-Type"] == "text/markdown"
        assert "## Quick start" in (metadata.get_payload() or "")

    def test_the_sdist_has_the_sources_readme_license_and_changelog(
        self, distribution: Distribution
    ) -> None:
        """Enough to build the wheel again, and the files a packager looks for."""
        with tarfile.open(distribution.sdist) as sdist:
            names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        top = {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO"}
        assert top <= names
        assert {f"src/{name}" for name in TEST_SUPPORT} <= names


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory, distribution: Distribution
) -> FreshEnvironment:
    """A fresh virtual environment with the wheel installed (its dependencies from PyPI)."""
    venv = FreshEnvironment.create(tmp_path_factory.mktemp("installed") / "venv")
    venv.install(str(distribution.wheel))
    return venv


class TestInstalledWheel:
    def test_ratatosk_demo_runs(self, installed: FreshEnvironment, tmp_path: Path) -> None:
        """The installed command runs the whole round trip on loopback and says OK."""
        done = installed.command([str(installed.root / "bin" / "ratatosk"), "demo"], cwd=tmp_path)
        assert done.stdout.splitlines()[-1].startswith("OK: ")

    def test_ratatosk_says_its_version(self, installed: FreshEnvironment) -> None:
        done = installed.command([str(installed.root / "bin" / "ratatosk"), "--version"])
        assert done.stdout.strip() == f"ratatosk {VERSION}"

    def test_the_test_support_works_without_pytest_or_hypothesis(
        self, installed: FreshEnvironment
    ) -> None:
        """A user's script may use FakeTwilio with only the package installed."""
        script = (
            "import importlib.util as u\n"
            "from ratatosk.testing import FakeTwilio\n"
            "FakeTwilio()\n"
            "print(u.find_spec('pytest') is None, u.find_spec('hypothesis') is None)\n"
        )
        done = installed.run(["-c", script])
        assert done.stdout.split() == ["True", "True"]
