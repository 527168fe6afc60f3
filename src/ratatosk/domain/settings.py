"""Connection settings and the ``Secret`` wrapper (domain layer).

Settings are an immutable name -> value map: ``set_parameter`` returns a new
object, so a settings value can be shared between connectors and tasks without
anyone changing it under another's feet. Sensitive values are wrapped in
:class:`Secret` the moment they are set, so they cannot leak through ``repr``,
``str``, f-strings, ``attrs.asdict`` or a log line: the only way out is an
explicit ``reveal()``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from ._frozen import frozen_mapping

MASK = "********"
_SENSITIVE_NAME = re.compile(r"(token|secret|password|apikey|credential)", re.IGNORECASE)


class Secret:
    """A string that never shows itself; compare with ``==`` in constant time.

    Deliberately not an attrs class: ``attrs.asdict`` of anything holding a
    Secret (``Credentials``, say) would otherwise recurse into it and copy the
    value out.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise attrs.exceptions.FrozenInstanceError()

    def __delattr__(self, name: str) -> None:
        raise attrs.exceptions.FrozenInstanceError()

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it (the HTTP adapter)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value.strip())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))

    def __reduce__(self) -> Any:  # pickling would be a way out; refuse it
        raise TypeError("Secret values cannot be pickled")


def is_sensitive_name(name: str) -> bool:
    """Whether a parameter name looks like it holds a credential."""
    return bool(_SENSITIVE_NAME.search(name))


@attrs.frozen(repr=False)
class ConnectionSettings(Mapping[str, Any]):
    """Named connection parameters (``AccountSid``, ``AuthToken`` ...).

    Parameter names are kept exactly as documented. A value set under a
    sensitive name (or with ``sensitive=True``) is stored as a :class:`Secret`.
    """

    _parameters: Mapping[str, Any] = attrs.field(
        factory=dict, converter=frozen_mapping, alias="parameters"
    )
    _sensitive: frozenset[str] = attrs.field(factory=frozenset, alias="sensitive")

    def __attrs_post_init__(self) -> None:
        # Built directly (not through set_parameter), sensitive strings still become Secrets.
        wrapped = {
            name: Secret(value) if isinstance(value, str) and self._names_secret(name) else value
            for name, value in self._parameters.items()
        }
        object.__setattr__(self, "_parameters", frozen_mapping(wrapped))

    def _names_secret(self, name: object) -> bool:
        return name in self._sensitive or (isinstance(name, str) and is_sensitive_name(name))

    def set_parameter(
        self, name: str, value: Any, *, sensitive: bool | None = None
    ) -> ConnectionSettings:
        """A copy with ``name`` set; ``value=None`` removes the parameter."""
        if not isinstance(name, str) or not name:
            raise TypeError("a parameter name must be a non-empty str")
        marked = self._sensitive | {name} if sensitive else self._sensitive
        params = dict(self._parameters)
        if value is None:
            params.pop(name, None)
        elif (name in marked or is_sensitive_name(name)) and isinstance(value, str):
            params[name] = Secret(value)
        else:
            params[name] = value
        return ConnectionSettings(parameters=params, sensitive=marked)

    def with_parameters(self, values: Mapping[str, Any]) -> ConnectionSettings:
        """A copy with every item of ``values`` set (None removes)."""
        result = self
        for name, value in values.items():
            result = result.set_parameter(name, value)
        return result

    def is_sensitive(self, name: str) -> bool:
        return name in self._sensitive or is_sensitive_name(name)

    def get_string(self, name: str, default: str | None = None) -> str | None:
        """A non-secret string parameter (blank counts as absent).

        Secrets are not returned here; use :meth:`get_secret`, so that reading a
        secret is always visible in the code.
        """
        value = self._parameters.get(name)
        if value is None or isinstance(value, Secret):
            return default
        text = str(value).strip()
        return text or default

    def get_secret(self, name: str) -> Secret | None:
        value = self._parameters.get(name)
        if isinstance(value, Secret):
            return value if value else None
        if isinstance(value, str) and value.strip():
            return Secret(value)
        return None

    def get_int(self, name: str, default: int | None = None) -> int | None:
        value = self._parameters.get(name)
        if isinstance(value, bool):
            return default
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return default
        return default

    def get_bool(self, name: str, default: bool = False) -> bool:
        value = self._parameters.get(name)
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return default

    # Mapping protocol: read-only view, secrets stay wrapped.
    def __getitem__(self, name: str) -> Any:
        return self._parameters[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __len__(self) -> int:
        return len(self._parameters)

    def masked(self) -> dict[str, Any]:
        """A copy safe to print: sensitive values replaced by a mask."""
        return {
            k: (MASK if isinstance(v, Secret) or self.is_sensitive(k) else v)
            for k, v in self._parameters.items()
        }

    def __repr__(self) -> str:
        return f"ConnectionSettings({self.masked()!r})"

    __str__ = __repr__
