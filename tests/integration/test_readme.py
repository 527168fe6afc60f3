"""The README's examples run as written, in a fresh virtual environment, as a newcomer runs them.

The environment gets the package built from this working tree and exactly the
``pip install`` line of the README section under test (with the package's
name pointing at that build); the code is the README's own blocks, read from
README.md at run time. A README that stops working fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import attrs
import pytest

from distribution import PROJECT, Distribution, FreshEnvironment
from ratatosk.testing import BackgroundEmulator
from readme_text import blocks, section


def pip_install_line(heading: str) -> list[str]:
    """The arguments of the section's ``pip install`` line; it must name this package."""
    lines = [
        line
        for block in blocks(section(heading), "bash")
        for line in block.splitlines()
        if line.startswith("pip install ")
    ]
    assert len(lines) == 1, f"{heading!r} shows no single `pip install` line: {lines}"
    arguments = shlex.split(lines[0])[2:]
    assert PROJECT in arguments, f"{heading!r} does not install {PROJECT}"
    return arguments


@attrs.frozen
class Fresh:
    """A fresh virtual environment and the wheel built from this working tree."""

    venv: FreshEnvironment
    wheel: Path

    def install_as(self, heading: str) -> None:
        self.venv.install(
            *[str(self.wheel) if a == PROJECT else a for a in pip_install_line(heading)]
        )

    def run(
        self, arguments: list[str], cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return self.venv.run(arguments, cwd=cwd, **env)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, distribution: Distribution) -> Fresh:
    venv = FreshEnvironment.create(tmp_path_factory.mktemp("fresh") / "venv")
    return Fresh(venv, distribution.wheel)


def test_sending_example_runs_against_the_emulator(fresh: Fresh, tmp_path: Path) -> None:
    """The Sending example, with the README's install, sends one message to the emulator."""
    fresh.install_as("## Sending")
    code = blocks(section("## Sending"), "python")[0]
    (tmp_path / "send.py").write_text(code, encoding="utf-8")
    with BackgroundEmulator() as emulator:
        done = fresh.run(
            ["send.py"],
            cwd=tmp_path,
            TWILIO_ACCOUNT_SID=emulator.account_sid,
            TWILIO_AUTH_TOKEN=emulator.auth_token,
            TWILIO_API_BASE_URL=emulator.url,
        )
        stored = emulator.control(lambda model: model.stored_count)
    sid, status = done.stdout.split()
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert status == "Queued"
    assert stored == 1


def test_fake_twilio_example_passes_under_pytest(fresh: Fresh, tmp_path: Path) -> None:
    """The FakeTwilio example, with the README's install, passes as a test in a new project."""
    heading = "## Testing your code with FakeTwilio"
    fresh.install_as(heading)
    code = blocks(section(heading), "python")[0]  # the test; later blocks are fragments
    (tmp_path / "test_orders.py").write_text(code, encoding="utf-8")
    done = fresh.run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path)
    assert "1 passed" in done.stdout
