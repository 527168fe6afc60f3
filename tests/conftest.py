"""Hypothesis profiles for the whole suite, chosen by ``HYPOTHESIS_PROFILE``.

``dev`` (the default) keeps a full run quick; ``thorough`` is for a nightly or
pre-release run (``HYPOTHESIS_PROFILE=thorough make unit``). Tests that want
more examples than the profile gives by default ask for
``max(n, settings().max_examples)``, so ``thorough`` still raises them.
Fixtures belong in the conftest of the directory that uses them; the only ones
here are Twilio's OpenAPI contracts (kept in ``tests/contracts/``), which unit
and integration tests both read, and the redis-server plugin (``redis_support``),
which the port suites and the scaling tests share.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from openapi_contracts import CONTENT, MESSAGING, load_contract

#: The real redis-server the Redis adapters are tested on (fixtures: see its docstring).
pytest_plugins = ["redis_support"]

settings.register_profile(
    "dev",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=10_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _spec(name: str) -> Any:
    from openapi_core import OpenAPI

    # from_dict: the file's JSON has surrogate escapes that the YAML reader rejects.
    return OpenAPI.from_dict(load_contract(name))


@pytest.fixture(scope="session")
def messaging_spec() -> Any:
    """Twilio's REST API v2010 messaging contract, for openapi-core checks."""
    return _spec(MESSAGING)


@pytest.fixture(scope="session")
def content_spec() -> Any:
    """Twilio's Content API v1 contract, for openapi-core checks."""
    return _spec(CONTENT)
