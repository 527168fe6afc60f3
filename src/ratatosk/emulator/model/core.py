"""TwilioModel: one pure behaviour model of Twilio's Messages and Content APIs (emulator layer).

Both faces wrap it: ``ratatosk.emulator.app`` serves it over real HTTP and
``ratatosk.testing.FakeTwilio`` calls it in process, so the two cannot drift.
It does no I/O: time comes from an injected clock callable (aware UTC) and
every SID, token and fault from an injected ``random.Random``, so a seeded
run replays exactly. Methods answer :class:`Reply` values (status, JSON
body, headers, a fault to act out); status changes queue signed
:class:`StatusCallback` records that a face delivers.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final

from ...twilio.signature import compute_signature
from .content import ContentApiMixin, ContentTemplate, seed_templates
from .faults import FaultKind, FaultPlan, ScriptedError, after_store, fault_reply
from .media import HostedMedia, InboundMedia, MediaMixin
from .messages import StoredMessage, list_page
from .progress import FINAL_CHOICES, ProgressionMixin
from .records import (
    API_BASE,
    API_VERSION,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    SANDBOX_SENDER,
    Account,
    CreateAttempt,
    Reply,
    SidFactory,
    StatusCallback,
    error_reply,
    not_found,
)
from .validation import CreateParams, validate_create
from .webhooks import Location, inbound_form

Clock = Callable[[], dt.datetime]

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
WINDOW: Final = dt.timedelta(hours=24)
#: The create-call log keeps the most recent calls only.
MAX_ATTEMPTS: Final = 100_000


def _first_values(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    first: dict[str, str] = {}
    for key, value in form:
        first.setdefault(key, value)
    return first


def _system_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TwilioModel(ProgressionMixin, ContentApiMixin, MediaMixin):
    """Twilio's Messages API (v2010) and Content API (v1) for WhatsApp, in memory.

    Behaviour knobs: ``senders`` (the account's WhatsApp senders; None
    accepts any valid one, else 63007), ``final_status`` (``sent``,
    ``delivered`` or ``read``) reached one ``step_seconds`` per status,
    ``failing_recipients`` (address -> error code: those end
    ``undelivered``), ``enforce_window`` (free-form outside 24 h of the
    recipient's last inbound message ends ``undelivered`` with 63016),
    ``strict_content`` (an unknown ContentSid is refused with 21655 instead of
    being sent as an empty body) and ``faults`` (a :class:`FaultPlan`).
    Without ``rng`` the model seeds its own from the system's randomness, so
    two models never issue the same SIDs; pass a seeded one to replay a run.
    """

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        senders: Collection[str] | None = None,
        final_status: str = "read",
        step_seconds: float = 1.0,
        failing_recipients: Mapping[str, int] | None = None,
        enforce_window: bool = False,
        strict_content: bool = False,
        faults: FaultPlan | None = None,
        service_sender: str = SANDBOX_SENDER,
    ) -> None:
        if final_status not in FINAL_CHOICES:
            raise ValueError(f"final_status must be one of {FINAL_CHOICES}")
        self.clock: Clock = clock or _system_now
        self._rng = rng if rng is not None else random.Random()
        self._sids = SidFactory(self._rng)
        self.senders = frozenset(senders) if senders is not None else None
        self.final_status = final_status
        self.step = dt.timedelta(seconds=step_seconds)
        self.failing_recipients = dict(failing_recipients or {})
        self.enforce_window = enforce_window
        self.strict_content = strict_content
        self.faults = faults or FaultPlan()
        self.service_sender = service_sender
        self._accounts: dict[str, Account] = {}
        self._messages: dict[str, StoredMessage] = {}
        self._outbound: list[StoredMessage] = []
        self._heap: list[tuple[dt.datetime, int, str]] = []
        self._callbacks: deque[StatusCallback] = deque()
        self._script: deque[ScriptedError | FaultKind] = deque()
        self._failing: ScriptedError | None = None
        self._attempts: deque[CreateAttempt] = deque(maxlen=MAX_ATTEMPTS)
        self._last_inbound: dict[tuple[str, str], dt.datetime] = {}
        self._templates: dict[str, ContentTemplate] = {}
        self._media: dict[str, HostedMedia] = {}
        self._cdn: dict[str, HostedMedia] = {}
        self._seq = 0
        self.main_account = self.add_account(account_sid, auth_token)

    # --- accounts -------------------------------------------------------------------

    def add_account(
        self,
        sid: str | None = None,
        auth_token: str | None = None,
        *,
        friendly_name: str = "ratatosk emulator",
    ) -> Account:
        """Register an account (random SID/token when omitted), seeded with templates."""
        sid = sid or self._sids.sid("AC")
        if not _ACCOUNT_SID.fullmatch(sid):
            raise ValueError(f"an account SID is AC + 32 hex, not {sid!r}")
        account = Account(
            sid=sid,
            auth_token=auth_token or self._sids.sid("")[:32],
            friendly_name=friendly_name,
            date_created=self.clock(),
            channel_install_sid=self._sids.sid("XE"),
        )
        self._accounts[sid] = account
        for template in seed_templates(sid, account.date_created):
            self._templates[template.sid] = template
        return account

    def account(self, sid: str) -> Account | None:
        return self._accounts.get(sid)

    def authenticate(self, account_sid: str, username: str, password: str) -> Reply | None:
        """None when Basic credentials open ``account_sid``; else 401 / 20003."""
        account = self._accounts.get(username)
        if account is None or account.auth_token != password or username != account_sid:
            return error_reply(20003, "Authentication Error - invalid username", 401)
        return None

    def fetch_account(self, sid: str) -> Reply:
        account = self._accounts.get(sid)
        if account is None:
            return not_found(f"/{API_VERSION}/Accounts/{sid}.json")
        return Reply(status=200, body=account.to_json())

    # --- messages ---------------------------------------------------------------------

    def create_message(self, account_sid: str, form: Sequence[tuple[str, str]]) -> Reply:
        """POST Messages.json: scripted fault, drawn fault, validation, store; 201 or error.

        Every call is recorded in :attr:`attempts`.
        """
        stored_before = len(self._outbound)
        reply, fault = self._create_message(account_sid, form)
        first = _first_values(form)
        self._attempts.append(
            CreateAttempt(
                at=self.clock(),
                to=first.get("To"),
                body=first.get("Body"),
                fault=fault,
                status=0 if reply.reset is not None else reply.status,
                sid=self._outbound[-1].sid if len(self._outbound) > stored_before else None,
                retry_after=reply.headers.get("Retry-After"),
            )
        )
        return reply

    def _create_message(
        self, account_sid: str, form: Sequence[tuple[str, str]]
    ) -> tuple[Reply, str | None]:
        account = self._accounts.get(account_sid)
        if account is None:
            return not_found(f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"), None
        fault: FaultKind | None = None
        late_error: ScriptedError | None = None
        scripted: ScriptedError | FaultKind | None = None
        if self._script:
            scripted = self._script.popleft()
        elif self._failing is not None:
            scripted = self._failing
        if scripted is not None:
            if isinstance(scripted, ScriptedError):
                if not scripted.after_store:
                    return scripted.reply(), "scripted"
                late_error = scripted
            else:
                fault = scripted
        else:
            fault = self.faults.draw(self._rng)
        label = fault.value if fault is not None else None
        if fault is not None and (early := fault_reply(fault, self.faults)) is not None:
            return early, label
        params = validate_create(form, senders=self.senders)
        if isinstance(params, Reply):
            return params, label
        template = self._templates.get(params.content_sid or "")
        if params.content_sid and template is None and self.strict_content:
            return error_reply(21655, "The ContentSid is Invalid."), label
        message = self._store_outbound(account, params, template)
        if late_error is not None:
            return late_error.reply(), "scripted-after-store"
        return after_store(fault, self.faults, Reply(status=201, body=message.to_json())), label

    def fetch_message(self, account_sid: str, sid: str) -> Reply:
        message = self._messages.get(sid)
        if message is None or message.account_sid != account_sid:
            return not_found(f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json")
        return Reply(status=200, body=message.to_json())

    def list_messages(self, account_sid: str, query: Mapping[str, str]) -> Reply:
        """GET Messages.json with Twilio's filters and paging, newest first."""
        if account_sid not in self._accounts:
            return not_found(f"/{API_VERSION}/Accounts/{account_sid}/Messages.json")
        return list_page(account_sid, list(self._messages.values()), query)

    def message(self, sid: str) -> StoredMessage | None:
        """Inspection: the stored record of a message (outbound or inbound)."""
        return self._messages.get(sid)

    @property
    def outbound(self) -> list[StoredMessage]:
        """Inspection: messages stored by create calls, oldest first."""
        return list(self._outbound)

    @property
    def attempts(self) -> list[CreateAttempt]:
        """Inspection: the most recent create calls (at most ``MAX_ATTEMPTS``), oldest first."""
        return list(self._attempts)

    @property
    def stored_count(self) -> int:
        """How many creates stored a message (retries after ambiguous faults count twice)."""
        return len(self._outbound)

    def count_identical(self, to: str, from_: str | None, body: str) -> int:
        """How many stored outbound messages share this (to, from, body)."""
        return sum(1 for m in self._outbound if (m.to, m.from_, m.body) == (to, from_, body))

    def duplicate_count(self) -> int:
        """Stored messages beyond the first of each identical (to, sender, body)."""
        counts = Counter((m.to, m.from_ or m.messaging_service_sid, m.body) for m in self._outbound)
        return sum(n - 1 for n in counts.values())

    def dump(self) -> list[dict[str, object]]:
        """Every stored message with its callback URL, for debugging."""
        return [
            {
                **m.to_json(),
                "status_callback": m.status_callback,
                "persistent_action": list(m.persistent_action),
                "form": [list(p) for p in m.form],
            }
            for m in self._messages.values()
        ]

    def _store_outbound(
        self,
        account: Account,
        params: CreateParams,
        template: ContentTemplate | None,
    ) -> StoredMessage:
        now = self.clock()
        via_service = params.messaging_service_sid is not None and params.from_ is None
        body = params.body or ""
        if template is not None:
            body = template.render(params.content_variables)
        message = StoredMessage(
            sid=self._sids.sid("MM" if params.media_urls else "SM"),
            account_sid=account.sid,
            to=params.to,
            from_=params.from_,
            body=body,
            direction="outbound-api",
            status="accepted" if via_service else "queued",
            num_media=len(params.media_urls),
            num_segments=0 if via_service else 1,
            messaging_service_sid=params.messaging_service_sid,
            date_created=now,
            date_updated=now,
            date_sent=now,
            form=params.form,
            status_callback=params.status_callback,
            content_sid=params.content_sid,
            media_urls=params.media_urls,
            persistent_action=params.persistent_action,
            seq=self._next_seq(),
        )
        failure = self._failure_code(params, template, params.from_ or self.service_sender)
        message.plan = self.path_after(message.status, failure)
        self._store(message)
        self._outbound.append(message)
        self.schedule(message, now + self.step)
        return message

    def _failure_code(
        self, params: CreateParams, template: ContentTemplate | None, sender: str
    ) -> int | None:
        if params.to in self.failing_recipients:
            return self.failing_recipients[params.to]
        if template is not None and template.whatsapp_status != "approved":
            return 63027
        if self.enforce_window and not params.is_template:
            last = self._last_inbound.get((sender, params.to))
            if last is None or self.clock() - last > WINDOW:
                return 63016
        return None

    def _store(self, message: StoredMessage) -> None:
        self._messages[message.sid] = message

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- inbound ----------------------------------------------------------------------

    def inbound_message(
        self,
        from_: str,
        to: str,
        *,
        body: str = "",
        media: Sequence[InboundMedia | tuple[str, str] | str] = (),
        location: Location | tuple[float, float] | None = None,
        button: tuple[str, str] | str | None = None,
        profile_name: str | None = None,
        reply_to_sid: str | None = None,
        account_sid: str | None = None,
        api_base: str = API_BASE,
    ) -> dict[str, str]:
        """A customer writes to the business: store it, open the 24 h window, return its form.

        ``media`` items are URLs (``(url, type)`` or a URL, sent as given) or
        :class:`InboundMedia`, which Twilio stores: the webhook then carries
        its Media resource URL on ``api_base``, served by :meth:`fetch_media`.
        """
        account = self._accounts[account_sid] if account_sid else self.main_account
        sid = self._sids.sid("MM" if media else "SM")
        pairs = [
            self._host_media(account.sid, sid, m, api_base)
            if isinstance(m, InboundMedia)
            else (m, "image/jpeg")
            if isinstance(m, str)
            else m
            for m in media
        ]
        if isinstance(location, tuple):
            location = Location(latitude=location[0], longitude=location[1])
        if isinstance(button, str):
            button = (button, button)
        reply_to = None
        if reply_to_sid is not None:
            original = self._messages.get(reply_to_sid)
            reply_to = (reply_to_sid, (original.from_ if original else None) or to)
        now = self.clock()
        form = inbound_form(
            sid=sid,
            account_sid=account.sid,
            from_=from_,
            to=to,
            body=body,
            media=pairs,
            location=location,
            button=button,
            profile_name=profile_name,
            reply_to=reply_to,
        )
        self._store(
            StoredMessage(
                sid=sid, account_sid=account.sid, to=to, from_=from_, body=form["Body"],
                direction="inbound", status="received", num_media=len(pairs), num_segments=1,
                messaging_service_sid=None, date_created=now, date_updated=now, date_sent=now,
                media_urls=tuple(url for url, _ in pairs), seq=self._next_seq(),
            )
        )  # fmt: skip
        self._last_inbound[(to, from_)] = now
        return form

    def idempotency_token(self) -> str:
        """A fresh ``I-Twilio-Idempotency-Token`` for a webhook a face sends."""
        return self._sids.token()

    def sign(self, url: str, params: Mapping[str, str], account_sid: str | None = None) -> str:
        """``X-Twilio-Signature`` for a webhook the model sends, with the account token."""
        account = self._accounts[account_sid] if account_sid else self.main_account
        return compute_signature(account.auth_token, url, params)

    # --- faults -----------------------------------------------------------------------

    def fail_next(
        self,
        code: int,
        status: int = 400,
        message: str | None = None,
        retry_after: float | None = None,
        *,
        after_store: bool = False,
        times: int = 1,
    ) -> None:
        """The next ``times`` creates answer this Twilio error (queued after earlier scripts).

        Each create call takes one, and a client's retry is a create call:
        a retried error (429, 503) scripted once is absorbed by the retry.
        ``after_store``: the message is created first (when valid), as Twilio
        may do before a 5xx.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times!r}")
        error = ScriptedError(
            code=code,
            status=status,
            message=message,
            retry_after=retry_after,
            after_store=after_store,
        )
        self._script.extend([error] * times)

    def fail_all(
        self,
        code: int,
        status: int = 400,
        message: str | None = None,
        retry_after: float | None = None,
        *,
        after_store: bool = False,
    ) -> None:
        """Every create answers this Twilio error until :meth:`clear_failures`.

        For "this send fails, retries included", whatever the client's retry
        policy; creates scripted with :meth:`fail_next` or :meth:`reset_next`
        still come first.
        """
        self._failing = ScriptedError(
            code=code,
            status=status,
            message=message,
            retry_after=retry_after,
            after_store=after_store,
        )

    def clear_failures(self) -> None:
        """Forget every scripted failure: the :meth:`fail_all` error and the queued ones."""
        self._failing = None
        self._script.clear()

    def reset_next(self, *, after_store: bool = False) -> None:
        """The next create drops the connection, storing the message first if asked."""
        self._script.append(
            FaultKind.RESET_AFTER_STORE if after_store else FaultKind.RESET_BEFORE_STORE
        )


__all__ = ["MAX_ATTEMPTS", "WINDOW", "Clock", "TwilioModel"]
