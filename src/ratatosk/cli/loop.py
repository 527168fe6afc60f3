"""The event loop the long-running commands run on: uvloop when the ``speed`` extra is there.

``pip install 'ratatosk-twilio[speed]'`` brings uvloop, whose loop and
transports are written in C and spend less CPU per request than asyncio's.
Nothing else changes: the same code runs on either loop, and without uvloop
:func:`run` is ``asyncio.run``. ``RATATOSK_LOOP=asyncio`` keeps the standard
loop even where uvloop is installed (to compare the two, or to rule uvloop
out when chasing a problem); ``RATATOSK_LOOP=uvloop`` insists on uvloop. Any
other value is refused, not ignored.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

#: The environment variable that picks the loop: ``asyncio`` or ``uvloop``; unset, the best one.
LOOP_VARIABLE: Final = "RATATOSK_LOOP"
LOOP_CHOICES: Final = ("asyncio", "uvloop")


class LoopChoiceError(ValueError):
    """``RATATOSK_LOOP`` asks for a loop this process cannot run: a usage error (exit 2).

    A misspelt value must not fall back silently: whoever set it to compare
    the loops, or to rule uvloop out, would measure the wrong one.
    """


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor when it is importable and not refused, else None (asyncio's).

    Raises :class:`LoopChoiceError` for a ``RATATOSK_LOOP`` that names no
    loop, or ``uvloop`` where uvloop is not installed.
    """
    given = os.environ.get(LOOP_VARIABLE, "")
    wanted = given.strip().lower()
    if wanted and wanted not in LOOP_CHOICES:
        raise LoopChoiceError(
            f"{LOOP_VARIABLE}={given!r} names no event loop: use {' or '.join(LOOP_CHOICES)}, "
            "or leave it unset (uvloop when installed, else asyncio)"
        )
    if wanted == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 - optional: the speed extra
    except ImportError:
        if wanted == "uvloop":
            raise LoopChoiceError(
                f"{LOOP_VARIABLE}=uvloop, but uvloop is not installed: "
                "pip install 'ratatosk-twilio[speed]', or use asyncio"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: which loop :func:`run` would use here, for banners."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop's loop when :func:`loop_factory` offers one.

    On a :class:`LoopChoiceError` ``main`` is closed unrun, so refusing the
    choice leaves no "coroutine was never awaited" warning behind.
    """
    try:
        factory = loop_factory()
    except LoopChoiceError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


__all__ = ["LOOP_CHOICES", "LOOP_VARIABLE", "LoopChoiceError", "loop_factory", "loop_name", "run"]
