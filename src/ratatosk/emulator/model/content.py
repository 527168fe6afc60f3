"""Content API v1 templates and their WhatsApp approval (emulator layer, pure).

The model's template store answers ``GET /v1/Content``, ``/v1/Content/{Sid}``,
``/v1/Content/{Sid}/ApprovalRequests`` and ``/v1/ContentAndApprovals`` in the
shapes of ``contracts/twilio_content_v1.openapi.json``, and renders a
template's ``twilio/text`` body with a send's ``ContentVariables``.

Seeded templates get SIDs derived from the account SID and the name, so two
processes (an emulator and a client with a static catalog) agree on them.
Content dates are ISO 8601 (``2015-07-30T19:00:00Z``), as the contract says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlencode

import attrs

from ...domain._frozen import frozen_mapping
from .records import CONTENT_BASE, Account, Json, Reply, error_reply, not_found

#: WhatsApp approval states Twilio reports.
APPROVAL_STATUSES: Final = frozenset(
    {"approved", "pending", "received", "rejected", "paused", "disabled", "unsubmitted"}
)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


@attrs.frozen(kw_only=True)
class ContentTemplate:
    """A Content resource: name, language, declared variables (with samples), types."""

    sid: str
    account_sid: str
    friendly_name: str
    language: str = "en"
    variables: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping)
    types: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    whatsapp_status: str = "approved"
    category: str = "UTILITY"
    rejection_reason: str = ""
    date_created: dt.datetime

    @property
    def content_type(self) -> str:
        return next(iter(self.types), "twilio/text")

    def render(self, values: Mapping[str, str]) -> str:
        """The text body with ``{{name}}`` replaced (send values over declared samples)."""
        text_type = self.types.get("twilio/text") or self.types.get("twilio/media") or {}
        body = str(text_type.get("body", "")) if isinstance(text_type, Mapping) else ""
        merged = {**self.variables, **values}
        return _PLACEHOLDER.sub(lambda m: merged.get(m.group(1), m.group(0)), body)

    def approval(self) -> Json:
        return {
            "type": "whatsapp",
            "name": self.friendly_name,
            "category": self.category,
            "content_type": self.content_type,
            "status": self.whatsapp_status,
            "rejection_reason": self.rejection_reason,
            "allow_category_change": True,
        }

    def to_json(self, base_url: str = CONTENT_BASE) -> Json:
        url = f"{base_url}/v1/Content/{self.sid}"
        return {
            **self._common(),
            "url": url,
            "links": {
                "approval_create": f"{url}/ApprovalRequests/whatsapp",
                "approval_fetch": f"{url}/ApprovalRequests",
            },
        }

    def to_json_with_approvals(self) -> Json:
        return {**self._common(), "approval_requests": {"whatsapp": self.approval()}}

    def _common(self) -> Json:
        stamp = self.date_created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "friendly_name": self.friendly_name,
            "language": self.language,
            "variables": dict(self.variables),
            "types": {name: dict(value) for name, value in self.types.items()},
            "date_created": stamp,
            "date_updated": stamp,
        }


def stable_content_sid(account_sid: str, friendly_name: str, language: str = "en") -> str:
    """``HX`` + 32 hex derived from account, name and language (same in every process)."""
    digest = hashlib.sha256(f"{account_sid}/{friendly_name}/{language}".encode()).hexdigest()
    return "HX" + digest[:32]


def seed_templates(account_sid: str, created: dt.datetime) -> list[ContentTemplate]:
    """The templates every fresh model holds: one approved, one pending review."""
    return [
        ContentTemplate(
            sid=stable_content_sid(account_sid, "order_confirmed"),
            account_sid=account_sid,
            friendly_name="order_confirmed",
            variables={"order_id": "ORD-0", "delivery_date": "2026-01-01"},
            types={
                "twilio/text": {
                    "body": "Your order {{order_id}} is confirmed. "
                    "It will arrive on {{delivery_date}}."
                }
            },
            whatsapp_status="approved",
            category="UTILITY",
            date_created=created,
        ),
        ContentTemplate(
            sid=stable_content_sid(account_sid, "pending_promo"),
            account_sid=account_sid,
            friendly_name="pending_promo",
            variables={"discount": "10%"},
            types={"twilio/text": {"body": "Save {{discount}} on your next order!"}},
            whatsapp_status="pending",
            category="MARKETING",
            date_created=created,
        ),
    ]


def content_page(
    templates: list[ContentTemplate],
    *,
    resource: str,
    page_size: int = 50,
    page: int = 0,
    page_token: str | None = None,
    base_url: str = CONTENT_BASE,
) -> Reply:
    """A page of ``/v1/Content`` (``resource="Content"``) or ``/v1/ContentAndApprovals``."""
    if not 1 <= page_size <= 1000 or page < 0:
        return error_reply(20001, "PageSize must be within 1..1000 and Page at least 0")
    ordered = sorted(templates, key=lambda t: (t.date_created, t.sid), reverse=True)
    start = page * page_size
    if page_token and page_token.startswith("PA"):
        sids = [t.sid for t in ordered]
        if page_token[2:] in sids:
            start = sids.index(page_token[2:]) + 1
    items = ordered[start : start + page_size]
    path = f"{base_url}/v1/{resource}"

    def url(page_no: int, token: str | None = None) -> str:
        pairs = [("PageSize", str(page_size)), ("Page", str(page_no))]
        if token:
            pairs.append(("PageToken", token))
        return f"{path}?{urlencode(pairs)}"

    has_next = bool(items) and start + page_size < len(ordered)
    contents = [
        t.to_json(base_url) if resource == "Content" else t.to_json_with_approvals() for t in items
    ]
    return Reply(
        status=200,
        body={
            "contents": contents,
            "meta": {
                "page": page,
                "page_size": page_size,
                "first_page_url": url(0),
                "previous_page_url": url(page - 1) if page > 0 else None,
                "url": url(page, page_token),
                "next_page_url": url(page + 1, "PA" + items[-1].sid) if has_next else None,
                "key": "contents",
            },
        },
    )


def approval_json(template: ContentTemplate, base_url: str = CONTENT_BASE) -> Json:
    """``GET /v1/Content/{Sid}/ApprovalRequests``."""
    return {
        "sid": template.sid,
        "account_sid": template.account_sid,
        "whatsapp": template.approval(),
        "url": f"{base_url}/v1/Content/{template.sid}/ApprovalRequests",
    }


def content_not_found(sid: str, suffix: str = "") -> Reply:
    return not_found(f"/v1/Content/{sid}{suffix}")


class ContentApiMixin:
    """The Content API v1 half of :class:`~ratatosk.emulator.model.TwilioModel`.

    Templates belong to an account; ``account_sid=None`` means the main one.
    """

    _templates: dict[str, ContentTemplate]
    main_account: Account
    clock: Callable[[], dt.datetime]

    def add_template(
        self,
        friendly_name: str,
        body: str,
        variables: Mapping[str, str] | None = None,
        *,
        language: str = "en",
        whatsapp_status: str = "approved",
        category: str = "UTILITY",
        account_sid: str | None = None,
    ) -> ContentTemplate:
        """Add a ``twilio/text`` template with ``{{name}}`` placeholders."""
        if whatsapp_status not in APPROVAL_STATUSES:
            raise ValueError(f"unknown approval status {whatsapp_status!r}")
        owner = account_sid or self.main_account.sid
        template = ContentTemplate(
            sid=stable_content_sid(owner, friendly_name, language),
            account_sid=owner,
            friendly_name=friendly_name,
            language=language,
            variables=dict(variables or {}),
            types={"twilio/text": {"body": body}},
            whatsapp_status=whatsapp_status,
            category=category,
            date_created=self.clock(),
        )
        self._templates[template.sid] = template
        return template

    def templates(self, account_sid: str | None = None) -> list[ContentTemplate]:
        owner = account_sid or self.main_account.sid
        return [t for t in self._templates.values() if t.account_sid == owner]

    def template_by_name(self, name: str, account_sid: str | None = None) -> ContentTemplate | None:
        return next((t for t in self.templates(account_sid) if t.friendly_name == name), None)

    def list_content(
        self,
        page_size: int = 50,
        page_token: str | None = None,
        *,
        page: int = 0,
        account_sid: str | None = None,
        base_url: str = CONTENT_BASE,
    ) -> Reply:
        """GET /v1/Content."""
        return content_page(
            self.templates(account_sid), resource="Content", page_size=page_size,
            page=page, page_token=page_token, base_url=base_url,
        )  # fmt: skip

    def list_content_and_approvals(
        self,
        page_size: int = 50,
        page_token: str | None = None,
        *,
        page: int = 0,
        account_sid: str | None = None,
        base_url: str = CONTENT_BASE,
    ) -> Reply:
        """GET /v1/ContentAndApprovals (``approval_requests.whatsapp`` per template)."""
        return content_page(
            self.templates(account_sid), resource="ContentAndApprovals", page_size=page_size,
            page=page, page_token=page_token, base_url=base_url,
        )  # fmt: skip

    def fetch_content(
        self, sid: str, *, account_sid: str | None = None, base_url: str = CONTENT_BASE
    ) -> Reply:
        template = self._owned_template(sid, account_sid)
        if template is None:
            return content_not_found(sid)
        return Reply(status=200, body=template.to_json(base_url))

    def fetch_approval(
        self, sid: str, *, account_sid: str | None = None, base_url: str = CONTENT_BASE
    ) -> Reply:
        template = self._owned_template(sid, account_sid)
        if template is None:
            return content_not_found(sid, "/ApprovalRequests")
        return Reply(status=200, body=approval_json(template, base_url))

    def _owned_template(self, sid: str, account_sid: str | None) -> ContentTemplate | None:
        template = self._templates.get(sid)
        owner = account_sid or self.main_account.sid
        return template if template is not None and template.account_sid == owner else None


__all__ = [
    "APPROVAL_STATUSES",
    "ContentApiMixin",
    "ContentTemplate",
    "approval_json",
    "content_not_found",
    "content_page",
    "seed_templates",
    "stable_content_sid",
]
