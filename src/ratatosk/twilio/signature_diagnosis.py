"""Why a webhook signature was refused, and which setting would fix it (connector layer, pure).

The most common refusal is a valid request checked against the wrong URL:
Twilio signs the URL it called, and behind a proxy, ngrok or a TLS
terminator the server sees another (``http`` for ``https``, an inner host
name, a path the proxy stripped). :func:`diagnose` tries the URL that was
checked, then plausible others built from the request's own URL and its
``Host`` and forwarding headers (scheme, host, port, path and query
variants), and says which one Twilio's signature holds for and what to set
so the server checks that one. It needs only a ``check(url) -> bool``, so
the webhook server runs it over its ``SignatureValidator`` port and the
``ratatosk webhook doctor`` command over the token; it never sees the token.
"""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

import attrs

from .signature import body_sha256, url_variants

#: Forwarding headers a proxy may set, in the order they are reported.
FORWARDED_HEADERS: Final = (
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "Forwarded",
    "X-Original-Host",
)
#: Header values are the client's: a few short ones per header are enough to reason with.
_MAX_VALUES: Final = 4
_MAX_VALUE_LENGTH: Final = 200
_MAX_CANDIDATES: Final = 400

Headers = Mapping[str, Sequence[str]]


@attrs.frozen(kw_only=True)
class SignatureDiagnosis:
    """What was checked, what would have matched, and what to change."""

    valid: bool
    url: str
    tried: tuple[str, ...]
    signature_present: bool
    body_hash: str | None  #: JSON only: "matched", "mismatched" or "missing" (no bodySHA256)
    forwarded: tuple[tuple[str, str], ...]
    forwarded_trusted: bool | None
    matched_url: str | None = None
    differences: tuple[str, ...] = ()
    cause: str = ""
    setting: str | None = None

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self, recurse=False) | {
            "tried": list(self.tried),
            "forwarded": [list(pair) for pair in self.forwarded],
            "differences": list(self.differences),
        }


def _values(headers: Headers, name: str) -> list[str]:
    """Every comma-separated value of a header (any case), trimmed, capped, printable."""
    found: list[str] = []
    for key, values in headers.items():
        if key.lower() == name.lower():
            for value in values:
                found.extend(v.strip() for v in value.split(","))
    return [v[:_MAX_VALUE_LENGTH] for v in found if v.strip() and v.isprintable()][-_MAX_VALUES:]


def _forwarded_hosts(headers: Headers) -> list[str]:
    """``host=`` and ``proto=`` of RFC 7239 ``Forwarded``, as (proto, host) text."""
    hosts = []
    for element in _values(headers, "Forwarded"):
        for pair in element.split(";"):
            key, _, value = pair.strip().partition("=")
            if key.lower() == "host":
                hosts.append(value.strip('"'))
    return hosts


def _usable_netloc(text: str) -> bool:
    return bool(text) and not any(c in text for c in "/@?#\\ ") and text.isprintable()


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def candidate_urls(url: str, headers: Headers, json_hash: str | None = None) -> list[str]:
    """Plausible URLs Twilio may have signed, fewest changes from ``url`` first."""
    parts = urlsplit(url)
    schemes = _dedupe([parts.scheme, *_values(headers, "X-Forwarded-Proto"), "https", "http"])
    hosts = [
        parts.netloc,
        *_values(headers, "Host"),
        *_values(headers, "X-Forwarded-Host"),
        *_forwarded_hosts(headers),
        *_values(headers, "X-Original-Host"),
    ]
    for port in _values(headers, "X-Forwarded-Port"):
        hosts.extend(f"{h.rsplit(':', 1)[0]}:{port}" for h in list(hosts) if port.isdigit())
    netlocs = _dedupe(h for h in hosts if _usable_netloc(h))
    slash = parts.path[:-1] if parts.path.endswith("/") else parts.path + "/"
    prefixed = [p.rstrip("/") + parts.path for p in _values(headers, "X-Forwarded-Prefix")]
    undoubled = _undoubled(parts.path)
    paths = _dedupe([parts.path, *prefixed, slash, *([undoubled[0]] if undoubled else [])])
    queries = [parts.query, ""]
    if json_hash is not None and "bodySHA256" not in parse_qs(parts.query):
        queries.append("&".join(filter(None, [parts.query, f"bodySHA256={json_hash}"])))
    queries = _dedupe(queries)
    given = (parts.scheme, parts.netloc, parts.path, parts.query)
    scored = []
    for combo in itertools.product(schemes, netlocs, paths, queries):
        changes = sum(a != b for a, b in zip(combo, given, strict=True))
        scored.append((changes, urlunsplit((*combo, ""))))
    scored.sort(key=lambda item: item[0])
    return _dedupe(u for _, u in scored[:_MAX_CANDIDATES])


def _body_hash(url: str, json_body: str | bytes | None) -> str | None:
    if json_body is None:
        return None
    given = parse_qs(urlsplit(url).query).get("bodySHA256", [""])[0]
    if not given:
        return "missing"
    same = hmac.compare_digest(body_sha256(json_body).encode(), given.lower().encode())
    return "matched" if same else "mismatched"


def _without_inner_port(checked: str, matched: str) -> str:
    """``https://host/...`` rather than ``https://host:8080/...`` when only the scheme changed.

    The port was the server's own, behind a TLS terminator; the validator
    accepts either spelling, so the one a user would configure is shown.
    """
    a, b = urlsplit(checked), urlsplit(matched)
    if a.scheme == b.scheme or a.netloc != b.netloc or b.port is None:
        return matched
    return url_variants(matched)[1] if len(url_variants(matched)) > 1 else matched


def _undoubled(path: str) -> tuple[str, str, str] | None:
    """``path`` with a run of segments it repeats at once kept once, the path before that
    run, and the run; None when nothing repeats.

    ``public_url`` given as the whole webhook URL makes the server check the
    route twice (``/webhooks/twilio/whatsapp/webhooks/twilio/whatsapp``, and
    ``.../status`` after it for status callbacks).
    """
    segments = path.split("/")
    for size in range(len(segments) // 2, 0, -1):
        for start in range(1, len(segments) - 2 * size + 1):
            run = segments[start : start + size]
            if run == segments[start + size : start + 2 * size] and all(run):
                once = segments[: start + size] + segments[start + 2 * size :]
                return "/".join(once), "/".join(segments[:start]), "/" + "/".join(run)
    return None


def _differences(checked: str, matched: str) -> list[str]:
    a, b = urlsplit(checked), urlsplit(matched)
    said = []
    if a.scheme != b.scheme:
        said.append(f"scheme {b.scheme}, not {a.scheme}")
    if a.netloc.lower() != b.netloc.lower():
        said.append(f"host {b.netloc!r}, not {a.netloc!r}")
    if a.path != b.path:
        said.append(f"path {b.path!r}, not {a.path!r}")
    if a.query != b.query:
        said.append(f"query {b.query[:80]!r}, not {a.query[:80]!r}")
    return said


def diagnose(
    url: str,
    check: Callable[[str], bool],
    *,
    signature_present: bool,
    headers: Headers | None = None,
    json_body: str | bytes | None = None,
    trust_forwarded: bool | None = None,
) -> SignatureDiagnosis:
    """Check ``url``, and when it fails, the plausible URLs, and explain.

    ``check(url)`` says whether the request's signature holds for ``url``
    (the port variants are the validator's own). ``json_body`` is the raw
    body of a JSON webhook, None for a form. ``trust_forwarded`` is the
    server's setting, None when there is no server (the doctor).
    """
    headers = headers or {}
    forwarded = tuple(
        (name, value) for name in FORWARDED_HEADERS for value in _values(headers, name)
    )
    base = SignatureDiagnosis(
        valid=False,
        url=url,
        tried=url_variants(url),
        signature_present=signature_present,
        body_hash=_body_hash(url, json_body),
        forwarded=forwarded,
        forwarded_trusted=trust_forwarded,
    )
    if not signature_present:
        return attrs.evolve(
            base,
            cause="no X-Twilio-Signature header: the request is not from Twilio, "
            "or a proxy dropped the header",
        )
    if check(url):
        return attrs.evolve(base, valid=True, cause="the signature holds for this URL")
    json_hash = body_sha256(json_body) if json_body is not None else None
    matched = next((c for c in candidate_urls(url, headers, json_hash)[1:] if check(c)), None)
    if matched is None:
        return attrs.evolve(base, cause=_unmatched_cause(base.body_hash))
    matched = _without_inner_port(url, matched)
    cause, setting = _remedy(url, matched, headers, trust_forwarded)
    return attrs.evolve(
        base,
        matched_url=matched,
        differences=tuple(_differences(url, matched)),
        cause=cause,
        setting=setting,
    )


def _unmatched_cause(body_hash: str | None) -> str:
    if body_hash == "mismatched":
        return (
            "the JSON body is not the one Twilio hashed into bodySHA256: something between "
            "Twilio and the server re-encoded it; hand the validator the raw bytes"
        )
    if body_hash == "missing":
        return "a JSON webhook's URL carries bodySHA256, this one has none: the query was dropped"
    return (
        "no plausible URL matches: the auth token is not the one Twilio signs with (another "
        "account or subaccount, a rotated token), the body changed on its way, or a proxy "
        "hid the public URL (no X-Forwarded-Host): try the doctor with the URL set at Twilio"
    )


def _remedy(
    checked: str, matched: str, headers: Headers, trust_forwarded: bool | None
) -> tuple[str, str]:
    """The likely cause, and the setting that makes the server check ``matched``."""
    a, b = urlsplit(checked), urlsplit(matched)
    tail = a.path + (f"?{a.query}" if a.query else "")
    public = matched[: -len(tail)] if tail and matched.endswith(tail) else None
    if "bodySHA256" in b.query and "bodySHA256" not in a.query:
        return (
            "the URL checked lost its query: a JSON webhook's URL carries bodySHA256",
            "check the URL with its query string (the raw path, not a framework's path alone)",
        )
    undoubled = _undoubled(a.path)
    if undoubled is not None and undoubled[0] == b.path:
        _, before, route = undoubled
        return (
            f"the public URL already holds the webhook route {route!r}, so the "
            "server checked it twice: give the origin (and any prefix), not the route",
            f"--public-url {b.scheme}://{b.netloc}{before} (public_url=)",
        )
    if public is None:
        return (
            "Twilio signed another path or query than the one checked: the URL configured "
            "at Twilio differs from the one requested (a redirect, a rewrite)",
            "configure at Twilio the exact URL the server receives",
        )
    proxied = b.scheme in _values(headers, "X-Forwarded-Proto") or b.netloc in _values(
        headers, "X-Forwarded-Host"
    )
    if a.scheme != b.scheme and a.hostname == b.hostname:
        cause = f"TLS ends before the server: Twilio called {b.scheme}, the server saw {a.scheme}"
    elif a.path != b.path:
        cause = f"a proxy strips the path prefix {public.split(b.netloc, 1)[1]!r}"
    else:
        cause = f"Twilio called {b.scheme}://{b.netloc}, the server checked {a.scheme}://{a.netloc}"
    setting = f"--public-url {public} (public_url=)"
    if proxied and trust_forwarded is not True:
        setting += (
            "; or --trust-forwarded (trust_forwarded=True), only behind a proxy that sets "
            "X-Forwarded-Proto and X-Forwarded-Host"
        )
    return cause, setting


def summary(diagnosis: SignatureDiagnosis) -> str:
    """One line for a log: what was checked and found, every outside value escaped."""
    d = diagnosis
    if d.forwarded:
        shown = ", ".join(f"{name}={value!r}" for name, value in d.forwarded)
        trusted = {True: "trusted", False: "not trusted (trust_forwarded is off)", None: ""}
        forwarded = f"{shown} {trusted[d.forwarded_trusted]}".rstrip()
    else:
        forwarded = "none"
    parts = [
        f"signature {'present' if d.signature_present else 'missing'}",
        "checked " + ", ".join(repr(u[:300]) for u in d.tried),
        f"forwarded headers: {forwarded}",
    ]
    if d.body_hash is not None:
        parts.append(f"JSON body hash {d.body_hash}")
    parts.append(f"likely cause: {d.cause}")
    if d.matched_url is not None:
        parts.append(f"it holds for {d.matched_url[:300]!r}")
    if d.setting is not None:
        parts.append(f"set {d.setting}")
    return "; ".join(parts)


__all__ = ["FORWARDED_HEADERS", "SignatureDiagnosis", "candidate_urls", "diagnose", "summary"]
