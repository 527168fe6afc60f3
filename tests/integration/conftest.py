"""Fixtures of the integration tests that several modules share."""

from __future__ import annotations

import pytest

from distribution import Distribution, build


@pytest.fixture(scope="session")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Distribution:
    """One ``python -m build`` of this working tree per session: its wheel and sdist."""
    return build(tmp_path_factory.mktemp("distribution"))
