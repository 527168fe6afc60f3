"""Times read back from ISO 8601 text (connector layer, pure), the instant kept exactly.

Every store that writes a ``datetime`` as ``isoformat()`` text (the queue's
payloads, the send ledger, the status timelines, replayed send outcomes)
reads it back here. CPython's C ``fromisoformat`` (3.11 to 3.13 at least,
gh-152079) reads an offset under a second (``+00:00:00.000001``, which
``isoformat`` writes for such a zone) as UTC, moving the instant; this puts
the offset back.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

_SUB_SECOND_OFFSET: Final = re.compile(r"([+-])00:00:00\.(\d{6})\Z")


def datetime_from_iso(text: str) -> dt.datetime:
    """``datetime.fromisoformat(text)``, with an offset under a second kept as written."""
    parsed = dt.datetime.fromisoformat(text)
    tiny = _SUB_SECOND_OFFSET.search(text)
    if tiny is None:
        return parsed
    micros = int(tiny[2]) if tiny[1] == "+" else -int(tiny[2])
    return parsed.replace(tzinfo=dt.timezone(dt.timedelta(microseconds=micros)))


__all__ = ["datetime_from_iso"]
