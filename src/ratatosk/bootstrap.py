"""Composition root: settings + environment -> a wired connector.

The only module that chooses adapters (besides the CLI that calls it), and the
only one that reads ``TWILIO_*`` variables, always when asked, never at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .adapters.clock import SystemClock
from .adapters.templates import ContentApiTemplateCatalog, StaticTemplateCatalog
from .adapters.twilio_http import AiohttpMessagingApi
from .domain.settings import ConnectionSettings
from .ports import Clock, ConversationWindow, MessagingApi, TemplateCatalog
from .twilio.connector import TwilioWhatsAppConnector
from .twilio.resilience import SendPolicy
from .twilio.schema import TwilioChannelSchemas

#: Environment variable -> settings parameter.
ENVIRONMENT: Mapping[str, str] = {
    "TWILIO_ACCOUNT_SID": "AccountSid",
    "TWILIO_AUTH_TOKEN": "AuthToken",
    "TWILIO_WHATSAPP_FROM": "FromNumber",
    "TWILIO_API_BASE_URL": "ApiBaseUrl",
    "TWILIO_CONTENT_API_BASE_URL": "ContentApiBaseUrl",
    "TWILIO_MESSAGING_SERVICE_SID": "MessagingServiceSid",
    "TWILIO_STATUS_CALLBACK": "StatusCallback",
    "TWILIO_WEBHOOK_URL": "WebhookUrl",
    "TWILIO_TEMPLATES": "Templates",
    "RATATOSK_WINDOW_GUARD": "ConversationWindowGuard",
}


def settings_from_env(
    environ: Mapping[str, str] | None = None, base: ConnectionSettings | None = None
) -> ConnectionSettings:
    """Settings from ``TWILIO_*`` variables laid over ``base`` (blank variables ignored)."""
    env = os.environ if environ is None else environ
    settings = base or ConnectionSettings()
    for variable, parameter in ENVIRONMENT.items():
        value = env.get(variable, "").strip()
        if value:
            settings = settings.set_parameter(parameter, value)
    return settings


def template_catalog_for(settings: ConnectionSettings) -> TemplateCatalog | None:
    """A static catalog when ``Templates`` is set, else the Content API catalog."""
    static = settings.get_string("Templates")
    if static:
        return StaticTemplateCatalog.parse(static)
    if settings.get_string("AccountSid") and settings.get_secret("AuthToken"):
        return ContentApiTemplateCatalog.from_settings(settings)
    return None


def build_connector(
    settings: ConnectionSettings | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    transport: MessagingApi | None = None,
    template_catalog: TemplateCatalog | None = None,
    clock: Clock | None = None,
    send_policy: SendPolicy | None = None,
    conversation_window: ConversationWindow | None = None,
) -> TwilioWhatsAppConnector:
    """A connector with real adapters unless others are given; not yet initialised."""
    resolved = settings_from_env(environ, settings)
    owns_transport = transport is None
    if transport is None and resolved.get_string("AccountSid") and resolved.get_secret("AuthToken"):
        transport = AiohttpMessagingApi.from_settings(resolved)
    return TwilioWhatsAppConnector(
        TwilioChannelSchemas.TWILIO_WHATSAPP,
        resolved,
        transport=transport,
        template_catalog=template_catalog or template_catalog_for(resolved),
        clock=clock or SystemClock(),
        owns_transport=owns_transport,
        send_policy=send_policy,
        conversation_window=conversation_window,
    )
