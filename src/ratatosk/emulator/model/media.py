"""The media Twilio stores for inbound messages, and where it serves them (emulator layer, pure).

Twilio keeps a customer's photo as a Media resource of the message and puts
``{api}/2010-04-01/Accounts/AC.../Messages/MM.../Media/ME...`` in the webhook.
That URL needs the account's Basic credentials and answers with a redirect
to a short-lived URL on its CDN (``mms.twiliocdn.com``), which needs none.
The model mints the URL, answers the authenticated request with the redirect
and hands out the stored bytes for the CDN path; the faces do the HTTP.
"""

from __future__ import annotations

from typing import Final

import attrs

from .records import API_VERSION, Reply, SidFactory, not_found

#: Where Twilio's media redirects lead (the in-process fake serves it from here).
MEDIA_CDN_BASE: Final = "https://mms.twiliocdn.com"


@attrs.frozen
class InboundMedia:
    """Media a simulated customer sends: Twilio stores it, the webhook carries its URL."""

    content_type: str
    data: bytes = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class HostedMedia:
    """One stored Media resource: its SIDs, type, bytes and unguessable CDN key."""

    sid: str
    account_sid: str
    message_sid: str
    content_type: str
    data: bytes = attrs.field(repr=False)
    cdn_key: str

    def resource_path(self) -> str:
        return (
            f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.message_sid}"
            f"/Media/{self.sid}"
        )


class MediaMixin:
    """Stored inbound media of :class:`~ratatosk.emulator.model.TwilioModel`."""

    _media: dict[str, HostedMedia]  # by ME SID
    _cdn: dict[str, HostedMedia]  # by CDN key
    _sids: SidFactory

    def _host_media(
        self, account_sid: str, message_sid: str, item: InboundMedia, api_base: str
    ) -> tuple[str, str]:
        """Store ``item``; its ``(MediaUrl, MediaContentType)`` for the webhook."""
        media = HostedMedia(
            sid=self._sids.sid("ME"),
            account_sid=account_sid,
            message_sid=message_sid,
            content_type=item.content_type,
            data=item.data,
            cdn_key=self._sids.sid(""),
        )
        self._media[media.sid] = self._cdn[media.cdn_key] = media
        return api_base.rstrip("/") + media.resource_path(), item.content_type

    def fetch_media(
        self, account_sid: str, message_sid: str, media_sid: str, *, cdn_base: str = MEDIA_CDN_BASE
    ) -> Reply:
        """GET a Media resource's content (authenticated): 307 to its CDN URL, or 404."""
        media = self._media.get(media_sid)
        if media is None or (media.account_sid, media.message_sid) != (account_sid, message_sid):
            return not_found(
                f"/{API_VERSION}/Accounts/{account_sid}/Messages/{message_sid}/Media/{media_sid}"
            )
        location = f"{cdn_base.rstrip('/')}/{media.account_sid}/{media.cdn_key}"
        return Reply(status=307, headers={"Location": location})

    def cdn_media(self, account_sid: str, key: str) -> HostedMedia | None:
        """The media a CDN path names (no credentials: the key is the secret)."""
        media = self._cdn.get(key)
        return media if media is not None and media.account_sid == account_sid else None

    def hosted_media(self, sid: str) -> HostedMedia | None:
        """Inspection: a stored Media resource by its ``ME`` SID."""
        return self._media.get(sid)


__all__ = ["MEDIA_CDN_BASE", "HostedMedia", "InboundMedia", "MediaMixin"]
