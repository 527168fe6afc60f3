"""The event loop the long-running commands run on: uvloop when the ``speed`` extra is there.

``pip install 'ratatosk-twilio[speed]'`` brings uvloop, whose loop and
transports are written in C and spend less CPU per request than asyncio's.
Nothing else changes: the same code runs on either loop, and without uvloop
:func:`run` is ``asyncio.run``. ``RATATOSK_LOOP=asyncio`` keeps the standard
loop even where uvloop is installed (to compare the two, or to rule uvloop
out when chasing a problem).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

#: The environment variable that forces the standard loop (``asyncio``).
LOOP_VARIABLE: Final = "RATATOSK_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor when it is importable and not refused, else None (asyncio's)."""
    if os.environ.get(LOOP_VARIABLE, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional: the speed extra
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: which loop :func:`run` would use here, for banners."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop's loop when :func:`loop_factory` offers one."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


__all__ = ["LOOP_VARIABLE", "loop_factory", "loop_name", "run"]
