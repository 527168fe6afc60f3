"""Twilio's ``X-Twilio-Signature`` (connector layer, pure).

The signed string is the full URL Twilio requested followed by every form
parameter, keys sorted, each key's values sorted, as ``key + value``; the
signature is base64(HMAC-SHA1(auth token, that string)). Twilio's own
validator accepts the URL with and without an explicit default port, so we do
too. JSON webhooks carry ``bodySHA256`` in the query instead of form params.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..domain.settings import Secret

Params = Mapping[str, Sequence[str] | str]


def _signed_params(params: Params) -> str:
    """Sorted ``key + value`` pairs, each key's values sorted and de-duplicated, joined."""
    items = sorted(params.items())  # keys are unique: sorting the items compares keys only
    try:
        # A webhook's every field has one value: unpacking it is the whole work. A str
        # value unpacks only when it is one character, which is then the value itself.
        return "".join([key + value for key, (value,) in items])  # type: ignore[str-unpack]
    except ValueError:  # a field with several values, none, or a longer str value
        return _signed_params_in_full(items)


def _signed_params_in_full(items: Sequence[tuple[str, Sequence[str] | str]]) -> str:
    parts: list[str] = []
    for key, value in items:
        if isinstance(value, str):
            parts.append(key + value)
        elif len(value) == 1:  # a webhook's every field, nearly always
            parts.append(key + value[0])
        else:
            parts.extend([key + item for item in sorted(set(value))])
    return "".join(parts)


def signing_string(url: str, params: Params) -> str:
    """URL followed by sorted ``key+value`` pairs: what Twilio signs."""
    return url + _signed_params(params)


def compute_signature(auth_token: str | Secret, url: str, params: Params | None = None) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for ``url`` and form ``params``."""
    token = auth_token.reveal() if isinstance(auth_token, Secret) else auth_token
    digest = hmac.new(
        token.encode("utf-8"), signing_string(url, params or {}).encode("utf-8"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def body_sha256(body: str | bytes) -> str:
    """Hex SHA-256 of a JSON webhook body, as Twilio puts in ``bodySHA256``."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return hashlib.sha256(raw).hexdigest()


def url_variants(url: str) -> tuple[str, ...]:
    """The URL without its port and with its (default) port, as Twilio's validator tries."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return (url,)
    # The host exactly as given: ``parts.hostname`` would lower-case it, and Twilio signs
    # the URL as configured, so "Hooks.Example.com" must stay as it is.
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):  # IPv6 literal
        host = hostport[: hostport.index("]") + 1]
    else:
        host = hostport.partition(":")[0]
    prefix = userinfo + "@" if userinfo else ""
    default = {"https": 443, "http": 80}.get(parts.scheme)
    without = urlunsplit(parts._replace(netloc=prefix + host))
    with_port_number = port if port is not None else default
    if with_port_number is None:
        return (url, without) if url != without else (url,)
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{with_port_number}"))
    return tuple(dict.fromkeys((url, without, with_port)))


#: A server checks the same few URLs over and over; the tuple is immutable, so sharing is safe.
_url_variants_cached = functools.lru_cache(maxsize=64)(url_variants)


class TwilioSignatureValidator:
    """Validates ``X-Twilio-Signature`` with the account's auth token.

    Constant-time comparison; the token is held only inside the keyed HMAC
    state, so the validator can be logged or repr'd safely.
    """

    __slots__ = ("_mac",)

    def __init__(self, auth_token: str | Secret) -> None:
        token = auth_token.reveal() if isinstance(auth_token, Secret) else auth_token
        # The keyed HMAC state, built once: each check copies it instead of re-deriving the
        # key pads. "surrogatepass": text that is not UTF-8 (settings refuse such a token)
        # makes a signature that matches nothing, never an exception, so a webhook gets 403.
        self._mac = hmac.new(token.encode("utf-8", "surrogatepass"), digestmod=hashlib.sha1)

    def __repr__(self) -> str:
        return "TwilioSignatureValidator(auth_token=Secret('********'))"

    def validate(self, url: str, params: Params | str | bytes, signature: str | None) -> bool:
        """True when ``signature`` matches ``url`` and ``params``.

        ``params`` is the decoded form; for a JSON webhook pass the raw body
        (str or bytes), which must hash to the URL's ``bodySHA256``.
        """
        if not signature or not isinstance(url, str):
            return False
        form: Params
        if isinstance(params, str | bytes):
            expected_hash = parse_qs(urlsplit(url).query).get("bodySHA256", [""])[0]
            if not expected_hash or not hmac.compare_digest(
                body_sha256(params).encode(), expected_hash.lower().encode()
            ):
                return False
            form = {}
        else:
            form = params
        given = signature.strip().encode("utf-8", errors="replace")
        # compute_signature for each URL variant, with the parameters joined and encoded once.
        signed = _signed_params(form).encode("utf-8", "surrogatepass")
        for candidate in _url_variants_cached(url):
            mac = self._mac.copy()
            mac.update(candidate.encode("utf-8", "surrogatepass"))
            mac.update(signed)
            # Constant-time per variant; stopping at the first match tells a caller only
            # which spelling of the URL it signed, which it knows.
            if hmac.compare_digest(base64.b64encode(mac.digest()), given):
                return True
        return False
