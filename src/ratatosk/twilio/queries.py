"""Questions to Twilio that send nothing: where a message is, whose account this is,
and how the connector is doing.

Each answers a ``ConnectorResult`` with the documented code for its caller;
the connector only gates and delegates.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, Final

from ..domain.errors import MessagingErrorCodes
from ..domain.result import (
    ConnectorError,
    ConnectorResult,
    ConnectorStatus,
    HealthReport,
    StatusUpdate,
)
from ..domain.schema import ChannelSchema
from ..domain.status import ConnectorState
from ..ports import AccountResource, ApiError, MessagingApi, StatusTimeline, TransportError
from . import wire
from .errors import TwilioErrorCodes, error
from .provider_errors import annotate_status
from .schema import MESSAGE_SID_PATTERN
from .send import api_failure

_MESSAGE_SID: Final = re.compile(MESSAGE_SID_PATTERN)


async def message_status(
    api: MessagingApi, message_sid: object, now: dt.datetime
) -> ConnectorResult[StatusUpdate]:
    """Twilio's record of one message as a ``StatusUpdate``.

    Codes: STATUS_QUERY_FAILED (not a message SID: nothing is asked),
    WHATSAPP_STATUS_QUERY_FAILED (Twilio refused or could not be reached).
    """
    if not isinstance(message_sid, str) or not _MESSAGE_SID.fullmatch(message_sid):
        return ConnectorResult.failure(
            error(
                TwilioErrorCodes.STATUS_QUERY_FAILED,
                f"{str(message_sid)[:40]!r} is not a Twilio message SID (SM/MM + 32 hex)",
            )
        )
    failed = TwilioErrorCodes.WHATSAPP_STATUS_QUERY_FAILED
    try:
        answer = await api.fetch_message(message_sid)
    except TransportError as exc:
        return ConnectorResult.failure(error(failed, f"Twilio unreachable: {exc}"))
    if isinstance(answer, ApiError):
        return ConnectorResult.failure(api_failure(failed, "status query failed", answer))
    data: dict[str, Any] = {
        "twilio_status": answer.status,
        "num_segments": answer.num_segments,
        "price": answer.price,
        "price_unit": answer.price_unit,
        "to": answer.to,
        "from": answer.from_,
    }
    update = StatusUpdate(
        message_id=answer.sid,
        status=wire.map_status(answer.status),
        timestamp=answer.date_updated or answer.date_created or now,
        error_code=answer.error_code,
        error_message=answer.error_message,
        data={k: v for k, v in data.items() if v is not None},
    )
    return ConnectorResult.success(annotate_status(update))


def tracked_status(timeline: StatusTimeline) -> StatusUpdate:
    """The status that counts of a tracked message, as ``get_message_status`` answers it."""
    current = timeline.current
    return StatusUpdate(
        message_id=timeline.sid,
        status=wire.map_status(current.status),
        timestamp=current.at,
        error_code=current.error_code,
        data={
            "twilio_status": current.status,
            "source": "tracker",
            "reports": len(timeline.history),
        },
    )


async def account(api: MessagingApi) -> ConnectorResult[AccountResource]:
    """The account, which proves the credentials and the network path.

    Codes: INVALID_CREDENTIALS (Twilio said 401), CONNECTION_FAILED (anything else).
    """
    answer = await _fetch_account(api)
    if isinstance(answer, AccountResource):
        return ConnectorResult.success(answer)
    unreachable, refusal = answer
    if refusal is None:
        return ConnectorResult.failure(
            error(MessagingErrorCodes.CONNECTION_FAILED, f"Twilio unreachable: {unreachable}")
        )
    code = (
        MessagingErrorCodes.INVALID_CREDENTIALS
        if refusal.status == 401
        else MessagingErrorCodes.CONNECTION_FAILED
    )
    return ConnectorResult.failure(api_failure(code, "account check failed", refusal))


async def connector_status(
    api: MessagingApi,
    *,
    state: ConnectorState,
    schema: ChannelSchema,
    account_sid: str | None,
    uptime: Callable[[], dt.timedelta],
) -> ConnectorResult[ConnectorStatus]:
    """State, uptime and the account's own status. Code: STATUS_ERROR (the account could
    not be read)."""
    account = await _account_for_status(api)
    if isinstance(account, ConnectorError):
        return ConnectorResult.failure(account)
    return ConnectorResult.success(
        ConnectorStatus(
            state=state,
            channel=schema.channel,
            uptime=uptime(),
            data={
                "account_sid": account_sid,
                "account_status": account.status,
                "account_name": account.friendly_name,
                "schema_version": schema.version,
            },
        )
    )


async def health(
    api: MessagingApi | None,
    *,
    state: ConnectorState,
    channel: str,
    last_error: ConnectorError | None,
    now: Callable[[], dt.datetime],
) -> ConnectorResult[HealthReport]:
    """Healthy only when Ready (``api`` given) and Twilio answers an account fetch.

    Never fails: an unhealthy connector is a successful report listing what is wrong.
    """
    issues: list[str] = []
    started = now()
    if api is None:
        issues.append(f"connector is {state.value}")
        if last_error is not None:
            issues.append(f"{last_error.code}: {last_error.message}")
    else:
        result = await account(api)
        if result.error is not None:
            issues.append(f"{result.error.code}: {result.error.message}")
    latency = (now() - started).total_seconds()
    return ConnectorResult.success(
        HealthReport(
            healthy=not issues,
            state=state,
            checked_at=started,
            issues=tuple(issues),
            data={"latency_seconds": latency, "channel": channel},
        )
    )


async def _account_for_status(api: MessagingApi) -> AccountResource | ConnectorError:
    answer = await _fetch_account(api)
    if isinstance(answer, AccountResource):
        return answer
    unreachable, refusal = answer
    if refusal is None:
        return error(TwilioErrorCodes.STATUS_ERROR, f"account status unavailable: {unreachable}")
    return api_failure(TwilioErrorCodes.STATUS_ERROR, "account status unavailable", refusal)


async def _fetch_account(
    api: MessagingApi,
) -> AccountResource | tuple[TransportError | None, ApiError | None]:
    try:
        answer = await api.fetch_account()
    except TransportError as exc:
        return exc, None
    if isinstance(answer, ApiError):
        return None, answer
    return answer
