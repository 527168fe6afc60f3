"""Merging status reports into a timeline (connector layer, pure).

Twilio sends no callback for a message's first status, and its callbacks can
arrive out of order and more than once (adr/0021): a ``sent`` after
``delivered``, a ``delivered`` after ``read``. A report moves a message
forward only when its kernel status outranks the current one
(``MessageStatus.supersedes``); every distinct report is kept in the history
anyway, so nothing that arrived is lost, and a redelivered one changes nothing.
"""

from __future__ import annotations

from typing import Final

from ..ports import StatusEvent, StatusTimeline
from .wire import map_status

#: Reports kept per message; a message sees a handful, a runaway sender cannot grow it.
MAX_HISTORY: Final = 32


def advances(current: StatusEvent | None, event: StatusEvent) -> bool:
    """Whether ``event`` becomes the status that counts."""
    if current is None:
        return True
    return map_status(event.status).supersedes(map_status(current.status))


def merge(sid: str, known: StatusTimeline | None, event: StatusEvent) -> StatusTimeline:
    """The timeline after ``event``: history appended, current moved only forward.

    A report equal to one already seen (same status, same error code) is a
    redelivery, not news: Twilio sends each (message, status, code) once, so it
    changes nothing, and applying a callback twice is harmless.
    """
    if known is not None and any(
        seen.status == event.status and seen.error_code == event.error_code
        for seen in known.history
    ):
        return StatusTimeline(sid=sid, current=known.current, history=known.history, advanced=False)
    current = known.current if known is not None else None
    history = (*(known.history if known is not None else ()), event)[-MAX_HISTORY:]
    moved = advances(current, event)
    return StatusTimeline(
        sid=sid,
        current=event if moved or current is None else current,
        history=history,
        advanced=moved,
    )
