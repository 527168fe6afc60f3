"""``ratatosk webhook doctor`` and ``ratatosk webhook sign``: signatures from the shell.

``doctor`` takes a captured request (the URL the server checked, its
headers, the raw body in a file) and says whether ``X-Twilio-Signature``
holds, and if not, which plausible URL it holds for and what to set
(``--public-url``, ``--trust-forwarded``). ``sign`` builds a request signed
as Twilio would sign it, to try one's own deployment with curl. Both read
the auth token from ``TWILIO_AUTH_TOKEN`` (through ``bootstrap``) and never
print it: what they print are URLs, headers, the body given, and HMACs.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..bootstrap import settings_from_env
from ..domain.schema import is_absolute_http_url
from ..domain.settings import Secret
from ..domain.source import MessageSource, SourceFormat
from ..twilio.errors import TwilioErrorCodes, error
from ..twilio.signature import TwilioSignatureValidator, body_sha256, compute_signature
from ..twilio.signature_diagnosis import SignatureDiagnosis, diagnose
from ..twilio.wire import parse_form
from .output import EXIT_OK, EXIT_USAGE, Output

SIGNATURE: Final = "X-Twilio-Signature"
FORM: Final = "application/x-www-form-urlencoded"
#: A webhook body is a few KiB; a file far larger is not one.
MAX_BODY_FILE: Final = 1024 * 1024


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Register ``webhook doctor`` and ``webhook sign`` on the command's subparsers."""
    webhook = commands.add_parser("webhook", help="check or build signed webhook requests")
    verbs = webhook.add_subparsers(dest="webhook_command", required=True, metavar="COMMAND")
    doctor = verbs.add_parser(
        "doctor",
        parents=list(parents),
        help="say why a captured webhook's X-Twilio-Signature holds or not",
        description="Check a captured webhook against the auth token in TWILIO_AUTH_TOKEN; "
        "when its signature fails, try the plausible URLs Twilio may have signed (scheme, "
        "host, port, path and query variants) and name the setting that makes them agree.",
    )
    doctor.add_argument("--url", required=True, help="the URL the server checked the request for")
    doctor.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header of the request (X-Twilio-Signature, Content-Type, Host, X-Forwarded-*)",
    )
    doctor.add_argument(
        "--body-file", required=True, type=Path, help="the body exactly as received"
    )
    doctor.add_argument(
        "--trust-forwarded",
        action="store_true",
        help="the server runs with --trust-forwarded (tailors the advice)",
    )
    sign = verbs.add_parser(
        "sign",
        help="build a request signed like Twilio's, to test a deployment",
        description="Print a webhook request for URL signed with TWILIO_AUTH_TOKEN: its "
        "headers and body, or a curl command (--curl). For JSON lines output use "
        "'ratatosk --json webhook sign ...'.",
    )
    sign.add_argument("--url", required=True, help="the URL Twilio would call")
    body = sign.add_mutually_exclusive_group(required=True)
    body.add_argument("--form", action="append", metavar="K=V", help="a form field; repeat")
    body.add_argument("--json", dest="json_file", type=Path, metavar="FILE", help="a JSON body")
    sign.add_argument("--curl", action="store_true", help="print a curl command instead")


def webhook(args: argparse.Namespace, out: Output) -> int:
    token = settings_from_env().get_secret("AuthToken")
    if token is None:
        out.emit("usage", "error: set TWILIO_AUTH_TOKEN to the account's auth token")
        return EXIT_USAGE
    if not is_absolute_http_url(args.url):
        out.emit("usage", "error: --url must be an absolute http(s) URL")
        return EXIT_USAGE
    if args.webhook_command == "doctor":
        return _doctor(args, out, token)
    return _sign(args, out, token)


def _read_body(path: Path, out: Output) -> bytes | None:
    try:
        if path.stat().st_size > MAX_BODY_FILE:
            out.emit(
                "usage", f"error: {path} is larger than a webhook body ({MAX_BODY_FILE} bytes)"
            )
            return None
        return path.read_bytes()
    except OSError as exc:
        out.emit("usage", f"error: cannot read {path}: {exc.strerror or exc}")
        return None


def _headers(lines: Sequence[str]) -> dict[str, list[str]] | None:
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return None
        headers.setdefault(name.strip(), []).append(value.strip())
    return headers


def _header(headers: dict[str, list[str]], name: str) -> str | None:
    found = [v for key, values in headers.items() if key.lower() == name.lower() for v in values]
    return found[-1] if found else None


def _doctor(args: argparse.Namespace, out: Output, token: Secret) -> int:
    headers = _headers(args.header)
    if headers is None:
        out.emit("usage", "error: --header takes 'NAME: VALUE'")
        return EXIT_USAGE
    raw = _read_body(args.body_file, out)
    if raw is None:
        return EXIT_USAGE
    content_type = _header(headers, "Content-Type")
    if content_type is None:  # a capture without it: JSON bodies start with a brace
        content_type = "application/json" if raw.lstrip().startswith(b"{") else FORM
    source = MessageSource.from_content_type(content_type, raw)
    params: dict[str, list[str]] | str
    try:
        if source.format is SourceFormat.JSON:
            params = raw.decode("utf-8")
        elif source.format is SourceFormat.URL_POST:
            params = parse_form(source.body)
        else:
            out.emit("usage", f"error: a webhook is a form or JSON, not {content_type!r}")
            return EXIT_USAGE
    except (UnicodeDecodeError, ValueError):
        out.emit("usage", "error: the body is not readable as the Content-Type says")
        return EXIT_USAGE
    signature = _header(headers, SIGNATURE)
    validator = TwilioSignatureValidator(token)
    result = diagnose(
        args.url,
        lambda url: validator.validate(url, params, signature),
        signature_present=bool(signature),
        headers=headers,
        json_body=params if isinstance(params, str) else None,
        trust_forwarded=bool(args.trust_forwarded),
    )
    out.emit("diagnosis", _describe(result), **result.to_dict())
    if result.valid:
        return EXIT_OK
    return out.failure(
        error(TwilioErrorCodes.INVALID_SIGNATURE, f"{SIGNATURE} does not hold for {args.url}")
    )


def _describe(d: SignatureDiagnosis) -> str:
    if d.valid:
        return f"signature holds for {d.url}"
    lines = [f"signature does not hold for {d.url}", "  tried: " + ", ".join(d.tried)]
    if d.forwarded:
        shown = ", ".join(f"{name}: {value!r}" for name, value in d.forwarded)
        lines.append(f"  forwarded headers: {shown}")
    if d.body_hash is not None:
        lines.append(f"  JSON body hash (bodySHA256): {d.body_hash}")
    if d.matched_url is not None:
        lines.append(f"  it holds for: {d.matched_url} ({'; '.join(d.differences)})")
    lines.append(f"  likely cause: {d.cause}")
    if d.setting is not None:
        lines.append(f"  change: {d.setting}")
    return "\n".join(lines)


def _sign(args: argparse.Namespace, out: Output, token: Secret) -> int:
    url: str = args.url
    if args.form is not None:
        pairs = [item.partition("=") for item in args.form]
        if any(not sep or not key for key, sep, _ in pairs):
            out.emit("usage", "error: --form takes KEY=VALUE")
            return EXIT_USAGE
        params: dict[str, list[str]] = {}
        for key, _, value in pairs:
            params.setdefault(key, []).append(value)
        body = urlencode([(key, value) for key, _, value in pairs])
        content_type, data_flag, data = FORM, "--data-raw", body
        signature = compute_signature(token, url, params)
    else:
        raw = _read_body(args.json_file, out)
        if raw is None:
            return EXIT_USAGE
        try:
            body = raw.decode("utf-8")
            json.loads(body)
        except ValueError:
            out.emit("usage", f"error: {args.json_file} is not UTF-8 JSON")
            return EXIT_USAGE
        parts = urlsplit(url)
        query = "&".join(filter(None, [parts.query, f"bodySHA256={body_sha256(raw)}"]))
        url = urlunsplit(parts._replace(query=query))
        content_type, data_flag, data = "application/json", "--data-binary", f"@{args.json_file}"
        signature = compute_signature(token, url, {})
    headers = {"Content-Type": content_type, SIGNATURE: signature}
    curl = shlex.join(
        ["curl", "-sS", "-X", "POST", url]
        + [part for name, value in headers.items() for part in ("-H", f"{name}: {value}")]
        + [data_flag, data]
    )
    if args.curl:
        text = curl
    else:
        text = "\n".join([f"POST {url}", *(f"{k}: {v}" for k, v in headers.items()), "", body])
    out.emit("signed", text, method="POST", url=url, headers=headers, body=body, curl=curl)
    return EXIT_OK


__all__ = ["add_parser", "webhook"]
