"""Template ports: a friendly template name resolved to a Content SID, and the answer remembered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from ..domain._frozen import frozen_mapping


@attrs.frozen(kw_only=True)
class TemplateInfo:
    """A content template as the catalog knows it.

    ``whatsapp_status`` is WhatsApp's approval state (``approved``, ``pending``,
    ``rejected`` ...), None when unknown (a static catalog trusts its caller).
    ``variables`` are the declared variable names with their sample values.
    """

    sid: str
    friendly_name: str
    language: str | None = None
    whatsapp_status: str | None = None
    variables: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_mapping)


class TemplateLookupError(Exception):
    """The catalog could not be asked (network, auth); distinct from 'not found'.

    ``details`` are fields a caller may show with the coded error (never a secret).
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details: dict[str, Any] = details


@runtime_checkable
class TemplateCatalog(Protocol):
    """Resolves a friendly template name (``order_confirmed``) to a Content SID."""

    async def find(self, name: str, language: str | None = None) -> TemplateInfo | None:
        """None when no template has that name; raises TemplateLookupError when unreachable."""
        ...

    async def list(self) -> Sequence[TemplateInfo]: ...


@runtime_checkable
class HasTemplateCatalog(Protocol):
    """A transport that can also read the account's Content API templates.

    The connector's default catalog comes from its transport, so the
    documented constructor resolves template names with the same session
    and credentials it sends with.
    """

    def template_catalog(self) -> TemplateCatalog: ...


@runtime_checkable
class TemplateCache(Protocol):
    """Template lookups by (name, language), remembered for a while.

    A hit answers without asking the Content API; a remembered miss (None)
    keeps a typo from hammering it. Entries expire after the ``ttl`` given
    when stored.
    """

    async def get(self, name: str, language: str | None) -> tuple[bool, TemplateInfo | None]:
        """(found, info): ``found`` is False when nothing is remembered for the key."""
        ...

    async def put(
        self, name: str, language: str | None, info: TemplateInfo | None, ttl: float
    ) -> None: ...
