"""Every Twilio and WhatsApp error code the connector can meet, and what to do about it.

One table, as data: the kernel code a refusal maps to, where the code shows
up (a create answer, a fetch answer, a status callback), whether resending
can help (the retry class) and a one-line remediation. ``errors``,
``resilience``, the send pipeline, the status queries and the webhook codec
all read it, and ``docs/error-codes.md`` is rendered from it, so the code,
the errors callers see and the documentation cannot disagree.

Facts were checked against Twilio's error pages (twilio.com/docs/api/errors/
NNNNN) and the Meta-to-Twilio code mapping page; where a page could not be
found or left a fact open, the row says so (``confirmed=False`` or a comment).
The meanings and remediations are this project's own words.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

import attrs

from ..domain.errors import MessagingErrorCodes
from ..domain.result import StatusUpdate


class Retry(enum.Enum):
    """Whether sending again can help, and when."""

    #: Twilio did not process the request: the same request may go again at once.
    NOW = "now"
    #: Time, or a fix outside the message (account, sender, Meta, a media host), may cure it.
    LATER = "later"
    #: The message itself, or the recipient, has to change first: a resend fails the same way.
    NEVER = "never"


class MetOn(enum.Enum):
    """Where the connector meets a code."""

    #: The answer to Create Message (HTTP 4xx carrying the code).
    CREATE = "create"
    #: The answer to a fetch (a refusal, or the message's own ``error_code``).
    FETCH = "fetch"
    #: A status callback's ``ErrorCode``.
    CALLBACK = "callback"


@attrs.frozen(kw_only=True)
class ProviderError:
    """One row: a Twilio code, its kernel code, where it is met, its retry class, what to do.

    ``confirmed`` is False when Twilio's page for the code could not be found;
    the row then guesses cautiously and says so in ``meaning``.
    """

    code: int
    kernel_code: str
    met: frozenset[MetOn]
    retry: Retry
    meaning: str
    remediation: str
    confirmed: bool = True


_M = MessagingErrorCodes
#: TwilioErrorCodes.OUTSIDE_CONVERSATION_WINDOW; ``errors`` imports this module, so the
#: value is spelled here and a test holds it equal to the constant.
_OUTSIDE_WINDOW: Final = "OUTSIDE_CONVERSATION_WINDOW"

_CREATE: Final = frozenset({MetOn.CREATE})
_ANY_CALL: Final = frozenset({MetOn.CREATE, MetOn.FETCH})
_DELIVERY: Final = frozenset({MetOn.CALLBACK, MetOn.FETCH})
_BOTH: Final = frozenset({MetOn.CREATE, MetOn.CALLBACK, MetOn.FETCH})


def _row(  # noqa: PLR0917 - one table row, its columns in order
    code: int,
    kernel_code: str,
    met: frozenset[MetOn],
    retry: Retry,
    meaning: str,
    remediation: str,
    *,
    confirmed: bool = True,
) -> ProviderError:
    return ProviderError(
        code=code,
        kernel_code=kernel_code,
        met=met,
        retry=retry,
        meaning=meaning,
        remediation=remediation,
        confirmed=confirmed,
    )


_NOW, _LATER, _NEVER = Retry.NOW, Retry.LATER, Retry.NEVER

#: The table, ordered by code. Twilio codes absent here map to SEND_MESSAGE_FAILED
#: (see ``errors.map_provider_code``) and carry no retry class or remediation.
PROVIDER_ERRORS: Final[tuple[ProviderError, ...]] = (
    # Twilio's page lists 20001 as a warning (unknown parameters, ignored); the
    # connector has mapped it to INVALID_MESSAGE since the first release, so a
    # 20001 that does arrive as a refusal keeps that code.
    _row(20001, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "a parameter Twilio does not know",
         "Remove or correct the parameter Twilio did not recognise"),
    # 20003 is fixed outside the message (credentials), hence "later", not "never".
    _row(20003, _M.INVALID_CREDENTIALS, _ANY_CALL, _LATER,
         "credentials refused (HTTP 401)",
         "Check AccountSid and AuthToken (or the API key pair) and that the account is active"),
    # On create a 404 points at the account or base URL, on fetch at the SID; both
    # fail the same way until the request changes.
    _row(20404, _M.SEND_MESSAGE_FAILED, _ANY_CALL, _NEVER,
         "no such resource under this account",
         "Check the SID and that it belongs to the AccountSid and ApiBaseUrl in use"),
    _row(20429, _M.RATE_LIMITED, _ANY_CALL, _NOW,
         "too many concurrent API requests; Twilio did not process this one",
         "Retry after a short back-off, honouring Retry-After; lower the concurrency if it recurs"),
    _row(21211, _M.INVALID_RECIPIENT, _CREATE, _NEVER,
         "the To number is not a valid phone number",
         "Send to whatsapp:+E164 with the country code and no spaces or punctuation"),
    # Fixed in the Console (Messaging Geo Permissions): the same message then goes.
    _row(21408, _M.INVALID_SENDER, _CREATE, _LATER,
         "sending to the recipient's country is not enabled for the account",
         "Enable the destination in Messaging Geo Permissions, or check the country code"),
    _row(21602, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "the message has no Body, MediaUrl or ContentSid",
         "Give the message text, media or a template"),
    _row(21603, _M.INVALID_SENDER, _CREATE, _NEVER,
         "no From and no MessagingServiceSid",
         "Set a sender on the message, FromNumber or MessagingServiceSid"),
    _row(21604, _M.INVALID_RECIPIENT, _CREATE, _NEVER,
         "no To number",
         "Give the message a recipient"),
    _row(21610, _M.INVALID_RECIPIENT, _CREATE, _NEVER,
         "the recipient unsubscribed from this sender (STOP)",
         "Stop sending to this recipient until they opt back in (START)"),
    # Twilio's 21614 is about the To number (not a mobile number, mostly SMS); the
    # connector has reported it as INVALID_SENDER since its first release.
    _row(21614, _M.INVALID_SENDER, _CREATE, _NEVER,
         "the To number is not a mobile number (a landline, or malformed)",
         "Check that the recipient is a mobile number in E.164 form"),
    _row(21617, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "Body over 1600 characters",
         "Shorten the body to 1600 characters or split it into several messages"),
    _row(21619, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "sent through a Messaging Service with no Body, MediaUrl or ContentSid",
         "Give the message text, media or a template"),
    _row(21620, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "a media URL is malformed (usually no http:// or https://)",
         "Send absolute http(s) media URLs"),
    _row(21623, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "more media URLs than Twilio allows on one message",
         "Send fewer media per message; WhatsApp shows one attachment per message"),
    _row(21654, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "ContentVariables without a ContentSid",
         "Send the template's ContentSid with its variables, or drop the variables"),
    _row(21655, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "the ContentSid is malformed, deleted or of another account",
         "Use an HX... Content SID that exists on this account"),
    _row(21656, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "ContentVariables is not a valid JSON object of non-empty values",
         "Send ContentVariables as a JSON object with a non-empty value for every key"),
    _row(21658, _M.INVALID_MESSAGE, _CREATE, _NEVER,
         "a parameter is longer than its limit",
         "Shorten the parameter (Body, or a template variable) named in Twilio's message"),
    _row(63003, _M.INVALID_RECIPIENT, _DELIVERY, _NEVER,
         "the To address is not an active WhatsApp user, or is malformed",
         "Check the number is on WhatsApp and written whatsapp:+E164"),
    # Causes on Twilio's page span the recipient, the media and session-only fields.
    _row(63005, _M.SEND_MESSAGE_FAILED, _DELIVERY, _NEVER,
         "WhatsApp did not accept the content",
         "Read ChannelStatusMessage; check the recipient is on WhatsApp and the media is valid"),
    # Twilio's page lists a sender pending approval among the causes, which
    # clears without changing the message; whether 63007 comes back on create
    # or only in a callback is not documented (the facts sheet saw it on create).
    _row(63007, _M.INVALID_SENDER, _BOTH, _LATER,
         "From is not a WhatsApp sender of this account (or not approved yet)",
         "Send from a WhatsApp sender registered and approved on this account"),
    _row(63012, _M.SEND_MESSAGE_FAILED, _DELIVERY, _LATER,
         "WhatsApp (Meta) reported an internal error",
         "Send again later as a new message, a few times at most, spaced out"),
    _row(63013, _M.INVALID_MESSAGE, _DELIVERY, _NEVER,
         "the message breaks a WhatsApp policy (e.g. an empty or blank template variable)",
         "Fix the content: no empty variables, no runs of blanks or newlines, allowed media"),
    _row(63016, _OUTSIDE_WINDOW, _DELIVERY, _NEVER,
         "free-form message outside the 24-hour window",
         "Send an approved template (ContentSid), or wait for the user to write first"),
    # Twilio documents 63018 as a delivery failure; resilience.classify also meets it
    # on a 429 to create, so CREATE is listed as well.
    _row(63018, _M.RATE_LIMITED, _BOTH, _LATER,
         "the sender or account is over a WhatsApp rate or messaging-tier limit",
         "Slow down and spread business-initiated sends; the tier limit resets over 24 h"),
    _row(63019, _M.SEND_MESSAGE_FAILED, _DELIVERY, _LATER,
         "Twilio could not download the media (error or empty answer)",
         "Make the media URL publicly reachable and non-empty, then send again"),
    _row(63021, _M.INVALID_MESSAGE, _DELIVERY, _NEVER,
         "WhatsApp rejected the content (e.g. template over 1024 characters, media type)",
         "Shorten the template text and variables, or send a supported media type"),
    _row(63024, _M.INVALID_RECIPIENT, _DELIVERY, _NEVER,
         "WhatsApp considers the recipient invalid (not on WhatsApp, old app, terms not accepted)",
         "Ask the recipient to update WhatsApp and accept its terms, or use another channel"),
    _row(63027, _M.INVALID_MESSAGE, _DELIVERY, _NEVER,
         "no template for this language, or the template was sent the wrong way",
         "Send the template by ContentSid in a language it is approved in"),
    _row(63028, _M.INVALID_MESSAGE, _DELIVERY, _NEVER,
         "the number of template variables does not match the template",
         "Send one value per placeholder, numbered from 1 without gaps"),
    _row(63030, _M.INVALID_MESSAGE, _DELIVERY, _NEVER,
         "a parameter this kind of WhatsApp message does not take (e.g. media with a template)",
         "Drop the media from the template send, or fix the URL meant for a preview"),
    # Meta's marketing experiment: no fixed end, per Twilio's support article.
    _row(63032, _M.SEND_MESSAGE_FAILED, _DELIVERY, _NEVER,
         "WhatsApp will not deliver marketing templates to this user for now",
         "Reach the user another way, or reply once they write (inside an open conversation)"),
    # Seen as the answer to a create in twilio/twilio-python#811, and as a delivery failure.
    _row(63038, _M.RATE_LIMITED, _BOTH, _LATER,
         "the account reached its daily message limit",
         "Wait for the rolling 24-hour window, or ask Twilio Support to raise the limit"),
    # Never for US (+1) recipients, who get no marketing templates at all.
    _row(63049, _M.SEND_MESSAGE_FAILED, _DELIVERY, _LATER,
         "Meta chose not to deliver this marketing template",
         "Retry later, waiting longer each time; for +1 numbers use another channel"),
    # No Twilio page for 63051 was found; the row is a cautious placeholder.
    _row(63051, _M.SEND_MESSAGE_FAILED, _DELIVERY, _LATER,
         "not confirmed: no Twilio documentation found for this code",
         "Read twilio.com/docs/api/errors/63051 and the message's ChannelStatusMessage first",
         confirmed=False),
)  # fmt: skip


def _index(rows: Iterable[ProviderError]) -> Mapping[int, ProviderError]:
    by_code: dict[int, ProviderError] = {}
    for row in rows:
        if row.code in by_code:
            raise ValueError(f"Twilio code {row.code} appears twice in PROVIDER_ERRORS")
        by_code[row.code] = row
    return MappingProxyType(by_code)


#: Twilio code -> row, read-only.
BY_CODE: Final = _index(PROVIDER_ERRORS)


def provider_error(code: int | None) -> ProviderError | None:
    """The row for a Twilio code, or None for a code outside the table."""
    return BY_CODE.get(code) if code is not None else None


def guidance(code: int | None) -> dict[str, str]:
    """``retry`` and ``remediation`` for a code, ready to merge into details; empty if unknown."""
    row = provider_error(code)
    if row is None:
        return {}
    return {"retry": row.retry.value, "remediation": row.remediation}


def annotate_status(update: StatusUpdate) -> StatusUpdate:
    """A status update whose Twilio error code is in the table, with the table's advice.

    Adds ``retry`` and ``remediation`` to ``data`` and fills an empty
    ``error_message`` with the row's meaning; any other update is returned as is.
    """
    row = provider_error(update.error_code)
    if row is None:
        return update
    return attrs.evolve(
        update,
        error_message=update.error_message or row.meaning,
        data={**update.data, **guidance(row.code)},
    )


_COLUMNS: Final = ("code", "kernel code", "met on", "retry", "meaning", "what to do")


def markdown_table(rows: Iterable[ProviderError] = PROVIDER_ERRORS) -> str:
    """The table as Markdown, for ``docs/error-codes.md`` (a test holds the two equal)."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + " --- |" * len(_COLUMNS)]
    for row in rows:
        met = ", ".join(m.value for m in MetOn if m in row.met)
        code = str(row.code) if row.confirmed else f"{row.code} (unconfirmed)"
        cells = (code, f"`{row.kernel_code}`", met, row.retry.value, row.meaning, row.remediation)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "BY_CODE",
    "PROVIDER_ERRORS",
    "MetOn",
    "ProviderError",
    "Retry",
    "annotate_status",
    "guidance",
    "markdown_table",
    "provider_error",
]
