"""Several business numbers behind one webhook server: events routed by our own number.

An inbound message is for the number it was sent ``To``; a status callback is
about a message we sent ``From`` one of our numbers. Each handler here is an
ordinary webhook handler, so the server, its signature check and its
deduplication stay one.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ..domain.message import Message
from ..domain.result import ReceiveResult, StatusUpdate
from .webhook_server import MessageHandler, StatusHandler


def messages_by_number(
    handlers: Mapping[str, MessageHandler], default: MessageHandler | None = None
) -> MessageHandler:
    """A message handler that hands each inbound message to the handler of its ``To`` number.

    Keys are ``whatsapp:+E164`` addresses; messages for a number without a
    handler go to ``default`` (dropped when there is none, and logged by the
    server as handled). A delivery carrying several messages is split per number.
    """
    table = dict(handlers)

    async def route(received: ReceiveResult) -> None:
        groups: dict[str, list[Message]] = {}
        for message in received.messages:
            number = message.receiver.address if message.receiver is not None else ""
            groups.setdefault(number, []).append(message)
        for number, messages in groups.items():
            handler = table.get(number, default)
            if handler is not None:
                await handler(attrs.evolve(received, messages=tuple(messages)))

    return route


def statuses_by_number(
    handlers: Mapping[str, StatusHandler], default: StatusHandler | None = None
) -> StatusHandler:
    """A status handler that hands each callback to the handler of the number that sent it."""
    table = dict(handlers)

    async def route(update: StatusUpdate) -> None:
        handler = table.get(str(update.data.get("From", "")), default)
        if handler is not None:
            await handler(update)

    return route


__all__ = ["messages_by_number", "statuses_by_number"]
