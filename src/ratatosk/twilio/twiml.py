"""TwiML answers for webhooks (connector layer, pure)."""

from __future__ import annotations

from typing import Final
from xml.sax.saxutils import escape


class TwiML:
    """TwiML documents a webhook handler can return.

    ``EMPTY`` acknowledges a webhook without replying; Twilio wants
    ``text/xml`` back, and an empty body can be logged as error 12300.
    """

    CONTENT_TYPE: Final = "text/xml"
    EMPTY: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

    @staticmethod
    def message(body: str, *, media_url: str | None = None) -> str:
        """A reply to the sender, in the same conversation."""
        media = f"<Media>{escape(media_url)}</Media>" if media_url else ""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Response><Message><Body>{escape(body)}</Body>{media}</Message></Response>"
        )
