"""The read-only mapping behind every frozen value's mapping field (domain layer).

A frozen attrs class is only as immutable as its fields: a dict field can
still be changed in place, by the value's owner or by whoever built it from
that dict. Every mapping field therefore converts through
:func:`frozen_mapping`, one definition for the domain, the ports and the
emulator's records, so that they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


def frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of ``value`` (``None`` gives an empty one); an attrs converter.

    A copy, not a view: changing the caller's dict afterwards changes nothing.
    """
    return MappingProxyType(dict(value or {}))
