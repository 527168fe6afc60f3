"""The package as users get it: built by ``python -m build``, installed in fresh venvs.

Shared by the README tests and the packaging tests. :func:`build` runs on a
copy of this working tree (what a clone holds, less what ``.gitignore``
leaves out), so building never writes into the tree and the artefacts are
exactly what a release would upload. :class:`FreshEnvironment` is a virtual
environment with nothing in it but pip, and an environment free of this
session's ``TWILIO_*``, ``PYTHON*`` and ``VIRTUAL_ENV`` variables.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[1]
METADATA = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
PROJECT: str = METADATA["name"]
#: Names a clone has but a build must not see (as .gitignore says), at any depth.
_IGNORED_NAMES = {".git", ".venv", "__pycache__", ".mypy_cache", ".pytest_cache",
                  ".ruff_cache", ".hypothesis", "build", "dist"}  # fmt: skip


def clean_environ() -> dict[str, str]:
    """This process's environment without what would leak into a user's shell."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TWILIO_", "PYTHON", "VIRTUAL_ENV", "PYTEST", "RATATOSK_", "REDIS"))
    }


def _ignored(directory: str, names: Iterable[str]) -> set[str]:
    skipped = {n for n in names if n in _IGNORED_NAMES or n.endswith(".egg-info")}
    if Path(directory) == ROOT / "bench":
        skipped.add("out")
    return skipped


@attrs.frozen
class Distribution:
    """The wheel and the sdist of one build."""

    wheel: Path
    sdist: Path


def build(base: Path) -> Distribution:
    """``python -m build`` (an sdist, then a wheel built from it) on a copy of this tree."""
    tree = base / "tree"
    shutil.copytree(ROOT, tree, ignore=_ignored)
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(base / "dist"), str(tree)],
        env=clean_environ(), check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    (wheel,) = (base / "dist").glob("*.whl")
    (sdist,) = (base / "dist").glob("*.tar.gz")
    return Distribution(wheel, sdist)


@attrs.frozen
class FreshEnvironment:
    """A virtual environment with nothing in it but pip."""

    root: Path
    environ: dict[str, str]

    @classmethod
    def create(cls, root: Path) -> FreshEnvironment:
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
        return cls(root, clean_environ())

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def install(self, *arguments: str) -> None:
        """``pip install`` these (packages, paths to wheels); PyPI and pip's cache serve."""
        self.run(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", *arguments])

    def run(
        self, arguments: list[str], cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run this environment's python with ``arguments``; it must succeed."""
        return self.command([str(self.python), *arguments], cwd=cwd, **env)

    def command(
        self, arguments: list[str], cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a program (``self.root / "bin" / ...``); it must succeed."""
        done = subprocess.run(
            arguments,
            cwd=cwd,
            env=self.environ | env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done
