"""How a connector's parts are put together at ``initialize`` (connector layer).

The connector is a facade: it checks settings, then asks this module for its
adapters (``Plugs``, completed by the composition root) and for the send
pipeline built over them. Keeping the wiring here keeps the facade about
lifecycle and delegation, and gives one place where the order of the send
stages is decided.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs

from ..domain.schema import ChannelSchema
from ..domain.settings import ConnectionSettings
from ..ports import (
    Clock,
    ConversationWindow,
    MessagingApi,
    RateLimiter,
    SendLedger,
    StatusTracker,
    Telemetry,
    TemplateCache,
    TemplateCatalog,
)
from .outbound import SendConfig
from .resilience import SendPolicy
from .schema import setting_pairs
from .send import RetryHook, SendPipeline, TemplateResolver, WindowGuard, create_stages

#: The composition root, loaded by name so this layer imports no adapter (adr/0011).
COMPLETE_PLUGS: Final = "ratatosk.bootstrap:complete_plugs"


@attrs.define(kw_only=True)
class Plugs:
    """The adapters a connector runs on; None means "the default", chosen at ``initialize``.

    ``ratatosk.bootstrap.complete_plugs`` fills the gaps, so the documented
    constructor and ``bootstrap.build_connector`` always agree.
    """

    transport: MessagingApi | None = None
    template_catalog: TemplateCatalog | None = None
    template_cache: TemplateCache | None = None
    conversation_window: ConversationWindow | None = None
    rate_limiter: RateLimiter | None = None
    send_ledger: SendLedger | None = None
    status_tracker: StatusTracker | None = None
    clock: Clock | None = None
    #: What the composition root opened for these plugs (a Redis client), closed at shutdown.
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()


def complete(plugs: Plugs, settings: ConnectionSettings, policy: SendPolicy) -> Plugs:
    """The plugs with every gap filled by the composition root's defaults."""
    module_name, _, attr = COMPLETE_PLUGS.partition(":")
    fill: Any = getattr(importlib.import_module(module_name), attr)
    completed: Plugs = fill(plugs, settings, policy)
    return completed


def send_pipeline(
    schema: ChannelSchema,
    settings: ConnectionSettings,
    plugs: Plugs,
    policy: SendPolicy,
    *,
    rng: random.Random,
    on_retry: RetryHook | None,
    telemetry: Telemetry | None,
) -> SendPipeline:
    """The send pipeline over completed plugs: ``Retry(Reconcile(Throttle(CallTwilio)))``
    behind the plan, the window guard (when ``ConversationWindowGuard`` is on) and
    template resolution (adr/0016)."""
    assert plugs.transport is not None
    assert plugs.clock is not None
    assert plugs.send_ledger is not None
    windows = plugs.conversation_window
    guarded = settings.get_bool("ConversationWindowGuard") and windows is not None
    return SendPipeline(
        schema,
        SendConfig.from_settings(settings),
        api=plugs.transport,
        create=create_stages(
            plugs.transport,
            policy,
            ledger=plugs.send_ledger,
            limiter=plugs.rate_limiter,
            clock=plugs.clock,
            rng=rng,
            on_retry=on_retry,
        ),
        templates=TemplateResolver(
            plugs.template_catalog,
            plugs.template_cache,
            languages=setting_pairs(settings, "SenderTemplateLanguages"),
        ),
        ledger=plugs.send_ledger,
        clock=plugs.clock,
        deadline=policy.retry.deadline,
        guard=WindowGuard(windows, plugs.clock) if guarded and windows is not None else None,
        telemetry=telemetry,
    )
