"""Template resolution: a friendly name becomes a Content SID before anything is sent.

Checks what the catalog knows (approval, declared variables) and refuses
before any create (adr/0008). Lookups go through the ``TemplateCache`` port,
so every replica shares what one of them learned, and a name nobody has is
remembered as missing for a short while instead of asked again per send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from ...domain.content import TemplateContent
from ...domain.result import ConnectorError
from ...ports import (
    CreateMessageRequest,
    TemplateCache,
    TemplateCatalog,
    TemplateInfo,
    TemplateLookupError,
)
from ..errors import TwilioErrorCodes, error
from ..outbound import SendPlan, check_template
from .stage import sender_of

#: How long a found template is trusted, and a missing name remembered as missing.
FOUND_TTL: Final = 300.0
MISSING_TTL: Final = 10.0


class TemplateResolver:
    """``catalog`` answers names; ``cache`` (optional) remembers its answers.

    ``languages`` maps a sender to the language its templates are looked up
    in when a ``TemplateContent`` names none (``SenderTemplateLanguages``).
    """

    def __init__(
        self,
        catalog: TemplateCatalog | None,
        cache: TemplateCache | None = None,
        *,
        found_ttl: float = FOUND_TTL,
        missing_ttl: float = MISSING_TTL,
        languages: Mapping[str, str] | None = None,
    ) -> None:
        self._catalog = catalog
        self._languages = dict(languages or {})  # sender -> default template language
        self._cache = cache
        self._found_ttl = found_ttl
        self._missing_ttl = missing_ttl

    async def resolve(self, plan: SendPlan) -> CreateMessageRequest | ConnectorError:
        template = plan.template
        if template is None:
            return plan.request
        if self._catalog is None:
            return error(
                TwilioErrorCodes.MISSING_CONTENT_SID,
                f"template {template.template_id!r} is not a Content SID (HX...) and no "
                "template catalog is configured to resolve names",
                template=template.template_id,
            )
        if template.language is None and self._languages:
            language = self._languages.get(sender_of(plan.request))
            if language is not None:
                template = attrs.evolve(template, language=language)
        try:
            info = await self._find(template)
        except TemplateLookupError as exc:
            return error(
                TwilioErrorCodes.TEMPLATE_LOOKUP_FAILED,
                f"could not look up template {template.template_id!r}: {exc}",
                **exc.details,
            )
        if info is None:
            return error(
                TwilioErrorCodes.MISSING_CONTENT_SID,
                f"no Content SID for template {template.template_id!r}",
                template=template.template_id,
            )
        refused = check_template(info, template)
        if refused is not None:
            return refused
        return attrs.evolve(plan.request, content_sid=info.sid)

    async def _find(self, template: TemplateContent) -> TemplateInfo | None:
        assert self._catalog is not None
        name, language = template.template_id, template.language
        if self._cache is not None:
            known, info = await self._cache.get(name, language)
            if known:
                return info
        info = await self._catalog.find(name, language)
        if self._cache is not None:
            ttl = self._found_ttl if info is not None else self._missing_ttl
            await self._cache.put(name, language, info, ttl)
        return info
