"""Hypothesis profiles for the whole suite, chosen by ``HYPOTHESIS_PROFILE``.

``dev`` (the default) keeps a full run quick; ``thorough`` is for a nightly or
pre-release run (``HYPOTHESIS_PROFILE=thorough make unit``). Tests that want
more examples than the profile gives by default ask for
``max(n, settings().max_examples)``, so ``thorough`` still raises them.
Fixtures belong in the conftest of the directory that uses them, not here.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=10_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
