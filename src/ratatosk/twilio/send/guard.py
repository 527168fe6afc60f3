"""The window guard stage: a free-form send outside the 24-hour window never leaves."""

from __future__ import annotations

from ...domain.result import ConnectorError
from ...ports import Clock, ConversationWindow
from ..outbound import SendPlan
from ..window import business_of, check_window, is_free_form


class WindowGuard:
    """Reads the (maybe shared) window store; the rule itself is ``window.check_window``."""

    def __init__(self, windows: ConversationWindow, clock: Clock) -> None:
        self._windows = windows
        self._clock = clock

    async def check(self, plan: SendPlan) -> ConnectorError | None:
        if not is_free_form(plan):
            return None
        wanted = plan.request
        last = await self._windows.last_inbound(wanted.to, business_of(wanted))
        return check_window(wanted, last, self._clock.now())
