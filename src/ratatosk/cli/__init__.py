"""The ``ratatosk`` command: send, send-batch, status, templates, serve, emulator, demo,
worker, result, webhook doctor and sign, media fetch.

Reads ``TWILIO_*`` through ``bootstrap``; prints results as text or, with
``--json``, one JSON object per line. Exit status: 0 on success, 1 when the
operation failed with a coded error (code and message printed), 2 on bad usage.
The auth token is never printed: errors are ConnectorErrors, whose messages
are secret-free by construction, and unexpected exceptions print their type only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__
from ..bootstrap import build_connector, settings_from_env, template_catalog_for
from ..domain.content import MediaContent, MediaType, TemplateContent
from ..domain.message import MessageBuilder
from ..domain.settings import ConnectionSettings
from ..ports import TemplateLookupError
from ..twilio.connector import TwilioWhatsAppConnector
from ..twilio.errors import TwilioErrorCodes, error
from .batch import add_parser as add_batch_parser
from .batch import send_batch
from .demo import demo
from .loop import LoopChoiceError
from .media import add_parser as add_media_parser
from .media import fetch_media
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Output, describe_status, status_json
from .servers import emulator, serve
from .webhook import add_parser as add_webhook_parser
from .webhook import webhook
from .worker import add_parser as add_worker_parser
from .worker import add_send_options, result, submit, worker


def _json_option() -> argparse.ArgumentParser:
    """``--json`` for the top level and each command, so it goes before or after the command.

    Unset it is absent, not False: a command's default would otherwise
    overwrite the ``--json`` given before the command's name.
    """
    option = argparse.ArgumentParser(add_help=False)
    option.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON lines"
    )
    return option


def _parser_class(json_errors: bool) -> type[argparse.ArgumentParser]:
    """argparse's parser, whose errors are a JSON ``usage`` event when ``--json`` was given.

    argparse reports a bad command line before the program has read ``--json``
    from it, so ``main`` looks for the flag first and picks the class here;
    the subcommands' parsers are made of the same class.
    """

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            if json_errors:
                event = {"event": "usage", "message": f"{self.prog}: {message}"}
                print(json.dumps(event), flush=True)
                raise SystemExit(EXIT_USAGE)
            super().error(message)

    return Parser


def _parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    as_json = [_json_option()]
    parser = _parser_class(json_errors)(
        prog="ratatosk",
        parents=as_json,
        description="WhatsApp Business messaging through Twilio (or the local emulator).",
        epilog="Credentials come from TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, "
        "TWILIO_WHATSAPP_FROM and TWILIO_API_BASE_URL.",
    )
    parser.add_argument("--version", action="version", version=f"ratatosk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    send = commands.add_parser("send", parents=as_json, help="send one WhatsApp message")
    send.add_argument("--to", required=True, help="recipient, whatsapp:+E164")
    send.add_argument("--from", dest="sender", help="sender (default: TWILIO_WHATSAPP_FROM)")
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="a text message")
    what.add_argument("--template", help="a template: Content SID (HX...) or name")
    what.add_argument("--media", help="URL of one media item")
    send.add_argument("--var", action="append", default=[], metavar="K=V", help="template variable")
    send.add_argument("--language", help="template language, when names repeat across languages")
    send.add_argument("--caption", help="caption for --media")
    send.add_argument("--media-type", choices=[t.name.lower() for t in MediaType], default="image")
    send.add_argument("--validity", type=int, metavar="SECONDS", help="ValidityPeriod (1-36000)")
    send.add_argument("--id", dest="message_id", help="your own message id")
    add_send_options(send)

    status = commands.add_parser(
        "status", parents=as_json, help="ask Twilio for a message's status"
    )
    status.add_argument("sid", help="message SID (SM... or MM...)")

    templates = commands.add_parser("templates", help="content templates")
    templates_commands = templates.add_subparsers(dest="templates_command", required=True)
    templates_commands.add_parser(
        "list", parents=as_json, help="name, SID, language, WhatsApp approval"
    )

    serve = commands.add_parser(
        "serve", parents=as_json, help="run the webhook server; print each event"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--public-url",
        help="the scheme and host Twilio calls, with any path prefix a proxy strips, without "
        "the webhook route: https://hooks.example.com (default http://HOST:PORT)",
    )
    serve.add_argument(
        "--trust-forwarded", action="store_true", help="rebuild the URL from X-Forwarded-* headers"
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="share state with other processes through Redis (default: REDIS_URL; else in memory)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes on one port (Linux SO_REUSEPORT), restarted when one dies; "
        "use --redis so they share deduplication and windows",
    )
    serve.add_argument("--worker-fds", help=argparse.SUPPRESS)  # set by the supervisor

    emulator = commands.add_parser("emulator", help="run a local Twilio emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=4010)
    emulator.add_argument("--account-sid", help="default: TWILIO_ACCOUNT_SID or a printed default")
    emulator.add_argument("--auth-token", help="default: TWILIO_AUTH_TOKEN or a printed default")
    emulator.add_argument("--step-delay", type=float, default=0.5, help="seconds between statuses")
    for fault in ("429", "500", "503", "reset-before", "reset-after", "slow"):
        emulator.add_argument(f"--fault-{fault}", type=float, default=0.0, metavar="RATE")
    emulator.add_argument(
        "--seed", type=int, help="seed for SIDs and fault injection (default: fresh each run)"
    )
    emulator.add_argument(
        "--media-port", type=int, default=0, help="port of its media CDN (default: a free one)"
    )

    commands.add_parser("demo", parents=as_json, help="the end-to-end demo on the emulator")
    add_batch_parser(commands, as_json)
    add_webhook_parser(commands, as_json)
    add_media_parser(commands, as_json)
    add_worker_parser(commands, as_json)
    return parser


def _variables(pairs: Sequence[str]) -> dict[str, str] | None:
    variables: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return None
        variables[key] = value
    return variables


async def _with_connector(out: Output, job: Any, redis: str | None = None) -> int:
    """``job`` on an initialised connector; ``redis``: its state (limiter, send ledger) there,
    shared with every other process on that Redis."""
    settings = None
    if redis is not None:
        settings = ConnectionSettings().set_parameter("RedisUrl", redis, sensitive=True)
    connector = build_connector(settings)
    initialized = await connector.initialize()
    if initialized.error is not None:
        await connector.shutdown()
        return out.failure(initialized.error)
    try:
        code: int = await job(connector)
        return code
    finally:
        await connector.shutdown()


async def _send(args: argparse.Namespace, out: Output) -> int:
    builder = MessageBuilder().with_id(args.message_id).to_phone(args.to)
    if args.sender:
        builder.from_phone(args.sender)
    if args.text is not None:
        builder.with_text(args.text)
    elif args.template is not None:
        variables = _variables(args.var)
        if variables is None:
            out.emit("usage", "error: --var takes KEY=VALUE")
            return EXIT_USAGE
        builder.with_content(TemplateContent(args.template, variables, language=args.language))
    else:
        media_type = MediaType[args.media_type.upper()]
        name = args.media.rsplit("/", 1)[-1] or None
        builder.with_content(MediaContent(media_type, name, args.media))
    if args.caption is not None:
        builder.with_property("caption", args.caption)
    if args.validity is not None:
        builder.with_property("ValidityPeriod", args.validity)
    message = builder.build()
    if args.queue:
        return await submit(args, out, message)

    async def job(connector: TwilioWhatsAppConnector) -> int:
        result = await connector.send_message(message)
        if result.error is not None:
            return out.failure(result.error)
        sent = result.unwrap()
        # A repeat of an id already sent is answered from the ledger: say so, or it reads
        # like a second message.
        again = (
            " (already sent with this --id: not sent again)" if sent.data.get("replayed") else ""
        )
        out.emit(
            "sent",
            f"sent {sent.provider_message_id} ({sent.status.value}){again}",
            message_id=sent.message_id,
            sid=sent.provider_message_id,
            status=sent.status.value,
            timestamp=sent.timestamp.isoformat(),
            data=dict(sent.data),
        )
        return EXIT_OK

    return await _with_connector(out, job, args.redis)


async def _status(args: argparse.Namespace, out: Output) -> int:
    async def job(connector: TwilioWhatsAppConnector) -> int:
        result = await connector.get_message_status(args.sid)
        if result.error is not None:
            return out.failure(result.error)
        update = result.unwrap()
        out.emit("status", describe_status(update), **status_json(update))
        return EXIT_OK

    return await _with_connector(out, job)


async def _templates(args: argparse.Namespace, out: Output) -> int:
    catalog = template_catalog_for(settings_from_env())
    if catalog is None:
        out.emit(
            "usage", "error: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_TEMPLATES)"
        )
        return EXIT_USAGE
    try:
        templates = await catalog.list()
    except TemplateLookupError as exc:
        return out.failure(error(TwilioErrorCodes.TEMPLATE_LOOKUP_FAILED, str(exc), **exc.details))
    for t in templates:
        out.emit(
            "template",
            f"{t.friendly_name:24} {t.sid}  {t.language or '-':5} {t.whatsapp_status or 'unknown'}",
            name=t.friendly_name,
            sid=t.sid,
            language=t.language,
            whatsapp_status=t.whatsapp_status,
            variables=dict(t.variables),
        )
    return EXIT_OK


def _detach_stdout() -> None:
    """Point stdout at the null device: the interpreter's last flush must not fail again
    on the closed pipe (and print a traceback the user did not cause)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (embedded, tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(json_errors="--json" in given)
    try:
        args = parser.parse_args(given)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    out = Output(bool(getattr(args, "json", False)))
    # Logs go to stderr so stdout stays a clean transcript (or JSON lines).
    wanted = os.environ.get("RATATOSK_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(
        level=wanted if wanted in logging.getLevelNamesMapping() else "WARNING",
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "demo":  # the transcript shows each refusal itself
        logging.getLogger("ratatosk.webhooks").setLevel(logging.ERROR)
    try:
        if args.command == "send":
            return asyncio.run(_send(args, out))
        if args.command == "status":
            return asyncio.run(_status(args, out))
        if args.command == "templates":
            return asyncio.run(_templates(args, out))
        if args.command == "send-batch":
            return send_batch(args, out)
        if args.command == "serve":
            return serve(args, out)
        if args.command == "emulator":
            return emulator(args, out)
        if args.command == "webhook":
            return webhook(args, out)
        if args.command == "worker":
            return worker(args, out)
        if args.command == "result":
            return result(args, out)
        if args.command == "media":
            return asyncio.run(fetch_media(args, out))
        return asyncio.run(demo(out))
    except LoopChoiceError as exc:  # RATATOSK_LOOP, read by the commands that run a loop
        out.emit("usage", f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`ratatosk ... | head`): stop quietly
        _detach_stdout()
        return EXIT_FAILED
    except Exception as exc:  # never print a traceback that could carry settings
        text = f"{type(exc).__name__}: {str(exc)[:200]}"
        out.emit("crash", f"error: unexpected {text}", error=text)
        return EXIT_FAILED
