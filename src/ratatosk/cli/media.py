"""``ratatosk media fetch URL --out FILE``: an inbound message's media, saved by Twilio's rules.

The connector's ``fetch_media`` with its policy: the credentials from
``TWILIO_*`` go to the configured API origin only, the CDN redirect is
followed without them to the allowed hosts (``--allow-host``, Twilio's media
hosts by default). The body streams into ``FILE.part``, renamed to ``FILE``
once complete, so a refused or broken download leaves no file behind.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..bootstrap import build_connector
from ..domain.result import ConnectorException
from ..ports import TWILIO_MEDIA_HOSTS, MediaPolicy
from .output import EXIT_OK, EXIT_USAGE, Output


def add_parser(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Register ``media fetch`` on the command's subparsers."""
    media = commands.add_parser("media", help="inbound media")
    verbs = media.add_subparsers(dest="media_command", required=True, metavar="COMMAND")
    fetch = verbs.add_parser(
        "fetch",
        parents=list(parents),
        help="save the media of an inbound message (its MediaUrlN) to a file",
        description="Fetch a Media URL with the account's credentials (sent to the "
        "configured API origin only) and follow Twilio's redirect to its CDN without them.",
    )
    fetch.add_argument("url", help="the Media URL, as in the webhook's MediaUrl0")
    fetch.add_argument("--out", required=True, type=Path, help="the file to write")
    fetch.add_argument(
        "--allow-host",
        action="append",
        metavar="HOST[:PORT]",
        help=f"a host the redirect may lead to; repeat (default: {', '.join(TWILIO_MEDIA_HOSTS)})",
    )
    fetch.add_argument("--max-bytes", type=int, default=MediaPolicy().max_bytes)
    fetch.add_argument("--timeout", type=float, default=MediaPolicy().timeout, metavar="SECONDS")


async def fetch_media(args: argparse.Namespace, out: Output) -> int:
    try:
        policy = MediaPolicy(
            allowed_hosts=tuple(args.allow_host or TWILIO_MEDIA_HOSTS),
            max_bytes=args.max_bytes,
            timeout=args.timeout,
        )
    except ValueError as exc:
        out.emit("usage", f"error: {exc}")
        return EXIT_USAGE
    connector = build_connector()
    initialized = await connector.initialize()
    if initialized.error is not None:
        await connector.shutdown()
        return out.failure(initialized.error)
    partial = args.out.with_name(args.out.name + ".part")
    try:
        opened = await connector.fetch_media(args.url, policy=policy, stream=True)
        if opened.error is not None:
            return out.failure(opened.error)
        async with opened.unwrap() as stream:
            with partial.open("wb") as sink:
                async for chunk in stream:
                    sink.write(chunk)
        os.replace(partial, args.out)
        out.emit(
            "media",
            f"saved {stream.content_type}, {stream.received} bytes to {args.out}",
            content_type=stream.content_type,
            size=stream.received,
            path=str(args.out),
        )
        return EXIT_OK
    except ConnectorException as exc:
        return out.failure(exc.error)
    except OSError as exc:
        out.emit("usage", f"error: cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_USAGE
    finally:
        partial.unlink(missing_ok=True)
        await connector.shutdown()


__all__ = ["add_parser", "fetch_media"]
