"""One backend fixture, two implementations: the contract suite runs on both.

``fake``: :class:`ratatosk.testing.FakeTwilio`, in memory.
``http``: :class:`AiohttpMessagingApi` over real HTTP to the emulator on
loopback; ``http11``: :class:`Http11MessagingApi` (the package's own HTTP/1.1
client), the same way. Both sit on a :class:`TwilioModel` driven by a manual clock, so the
same test can script faults and statuses the same way on either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest

from ratatosk import ConnectionSettings
from ratatosk.adapters.clock import ManualClock
from ratatosk.adapters.templates import ContentApiTemplateCatalog
from ratatosk.adapters.twilio_http import AiohttpMessagingApi, Http11MessagingApi, TwilioRestApi
from ratatosk.emulator.app import start_emulator
from ratatosk.emulator.model import TwilioModel
from ratatosk.ports import MessagingApi, TemplateCatalog
from ratatosk.testing import FakeTemplateCatalog, FakeTwilio
from ratatosk.twilio import TwilioChannelSchemas, TwilioWhatsAppConnector

ACCOUNT = "AC" + "c0" * 16
TOKEN = "contract-token-5f1e2d3c4b5a6978"
SENDER = "whatsapp:+14155238886"
OTHER_SENDER = "whatsapp:+14155550100"
RECIPIENT = "whatsapp:+15550002222"


@attrs.define
class Backend:
    """What a contract test needs: the port, the model behind it, and its clock."""

    name: str
    api: MessagingApi
    model: TwilioModel
    clock: ManualClock
    base_url: str | None = None
    rest: type[TwilioRestApi] = AiohttpMessagingApi

    def api_with_token(self, token: str) -> MessagingApi:
        """Another client of the same account, holding ``token``."""
        if self.base_url is None:
            return FakeTwilio(ACCOUNT, token, clock=self.clock, model=self.model)
        return self.rest(ACCOUNT, token, base_url=self.base_url)

    def template_catalog(self) -> TemplateCatalog:
        """The Content API catalog: in process for the fake, over HTTP for the emulator."""
        if self.base_url is None:
            return FakeTemplateCatalog(self.model, ACCOUNT)
        return ContentApiTemplateCatalog(ACCOUNT, TOKEN, base_url=self.base_url)

    def connector(
        self, *, catalog: TemplateCatalog | None = None, **settings: str
    ) -> TwilioWhatsAppConnector:
        config = (
            ConnectionSettings()
            .set_parameter("AccountSid", ACCOUNT)
            .set_parameter("AuthToken", TOKEN)
            .set_parameter("FromNumber", SENDER)
        )
        for key, value in settings.items():
            config = config.set_parameter(key, value)
        return TwilioWhatsAppConnector(
            TwilioChannelSchemas.TWILIO_WHATSAPP,
            config,
            transport=self.api,
            clock=self.clock,
            template_catalog=catalog,
        )


@pytest.fixture(params=["fake", "http", "http11"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    clock = ManualClock()
    model = TwilioModel(ACCOUNT, TOKEN, clock=clock.now, senders={SENDER, OTHER_SENDER})
    if request.param == "fake":
        fake = FakeTwilio(ACCOUNT, TOKEN, clock=clock, model=model)
        yield Backend("fake", fake, model, clock)
        return
    emulator = await start_emulator(model=model)
    rest = Http11MessagingApi if request.param == "http11" else AiohttpMessagingApi
    api = rest(ACCOUNT, TOKEN, base_url=emulator.url)
    try:
        yield Backend(request.param, api, model, clock, emulator.url, rest)
    finally:
        await api.close()
        await emulator.close()
