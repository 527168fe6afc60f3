"""The emulator's control endpoints under ``/_emulator/`` (emulator layer).

Loopback tooling for demos and tests, not part of Twilio's API, so no Basic
auth: ``POST /_emulator/inbound`` (JSON: ``url``, ``from``, ``to``, ``body``,
``media`` as ``[[url, content_type], ...]`` or, for media the emulator
stores and serves, ``[{"content_type": ..., "data_base64": ...}, ...]``, ``location``
``{latitude, longitude, address, label}``, ``button`` ``{text, payload}``,
``profile_name``, ``reply_to_sid``) sends a signed inbound message and
returns the webhook's status and body; ``GET /_emulator/messages`` dumps the
store; ``GET /_emulator/deliveries`` lists status-callback deliveries;
``POST /_emulator/status`` (``sid``, ``status``, ``error_code``) forces a
status; ``POST /_emulator/fail_next`` (``code``, ``status``, ``message``,
``retry_after``, ``after_store``, ``times``) scripts the next creates' error,
``POST /_emulator/fail_all`` (the same but ``times``) makes every create fail
until ``POST /_emulator/clear_failures``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from .callbacks import MODEL_KEY, STATE_KEY, send_inbound
from .model import InboundMedia, Location


def inbound_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``send_inbound`` from JSON-ish input (``from`` or ``from_``).

    Raises KeyError, TypeError or ValueError on malformed input.
    """
    sender = data.get("from_", data.get("from"))
    if not isinstance(sender, str) or not isinstance(data.get("to"), str):
        raise ValueError("'from' and 'to' must be strings")
    fields: dict[str, Any] = {"from_": sender, "to": data["to"]}
    if data.get("body") is not None:
        fields["body"] = str(data["body"])
    media: list[InboundMedia | tuple[str, str]] = []
    for item in data.get("media") or ():
        if isinstance(item, str):
            media.append((item, "image/jpeg"))
        elif isinstance(item, InboundMedia):
            media.append(item)
        elif isinstance(item, Mapping) and "data_base64" in item:
            data_bytes = base64.b64decode(str(item["data_base64"]), validate=True)
            media.append(InboundMedia(str(item.get("content_type", "image/jpeg")), data_bytes))
        elif isinstance(item, Mapping):
            media.append((str(item["url"]), str(item.get("content_type", "image/jpeg"))))
        else:
            url, mime = item
            media.append((str(url), str(mime)))
    if media:
        fields["media"] = media
    location = data.get("location")
    if isinstance(location, Mapping):
        fields["location"] = Location(
            latitude=float(location["latitude"]),
            longitude=float(location["longitude"]),
            address=location.get("address"),
            label=location.get("label"),
        )
    elif isinstance(location, Location):
        fields["location"] = location
    elif location is not None:
        latitude, longitude = location
        fields["location"] = Location(latitude=float(latitude), longitude=float(longitude))
    button = data.get("button")
    if isinstance(button, Mapping):
        fields["button"] = (str(button["text"]), str(button.get("payload", button["text"])))
    elif button is not None:
        fields["button"] = button if isinstance(button, str) else tuple(button)
    for key in ("profile_name", "reply_to_sid"):
        if data.get(key) is not None:
            fields[key] = str(data[key])
    return fields


async def _inbound(request: web.Request) -> web.Response:
    try:
        data = await request.json()
        url = data["url"]
        if not isinstance(url, str):
            raise TypeError("'url' must be a string")
        fields = inbound_fields(data)
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": f"bad inbound request: {exc}"}, status=400)
    try:
        answer = await send_inbound(request.app, url, **fields)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.json_response({"error": f"webhook unreachable: {exc!r}"}, status=502)
    return web.json_response(answer)


async def _messages(request: web.Request) -> web.Response:
    return web.json_response(request.app[MODEL_KEY].dump())


async def _deliveries(request: web.Request) -> web.Response:
    return web.json_response([attrs.asdict(d) for d in request.app[STATE_KEY].deliveries])


async def _status(request: web.Request) -> web.Response:
    try:
        data = await request.json()
        code = data.get("error_code")
        request.app[MODEL_KEY].set_status(
            str(data["sid"]), str(data["status"]), int(code) if code is not None else None
        )
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


async def _callbacks(request: web.Request) -> web.Response:
    """Queue status callbacks for a message in a chosen order, repeats included."""
    try:
        data = await request.json()
        statuses = data["statuses"]
        if not isinstance(statuses, list):
            raise TypeError("statuses must be a list")
        request.app[MODEL_KEY].queue_callbacks(str(data["sid"]), [str(s) for s in statuses])
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


def scripted_error(data: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``fail_next`` / ``fail_all`` from JSON; raises on malformed input."""
    retry_after = data.get("retry_after")
    after_store = data.get("after_store", False)
    if not isinstance(after_store, bool):
        raise TypeError("'after_store' must be true or false")
    message = data.get("message")
    return {
        "code": int(data["code"]),
        "status": int(data.get("status", 400)),
        "message": str(message) if message is not None else None,
        "retry_after": float(retry_after) if retry_after is not None else None,
        "after_store": after_store,
    }


async def _fail_next(request: web.Request) -> web.Response:
    try:
        data = await request.json()
        times = data.get("times", 1)
        if isinstance(times, bool) or not isinstance(times, int):
            raise TypeError("'times' must be an integer")
        request.app[MODEL_KEY].fail_next(**scripted_error(data), times=times)
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


async def _fail_all(request: web.Request) -> web.Response:
    try:
        request.app[MODEL_KEY].fail_all(**scripted_error(await request.json()))
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ok": True})


async def _clear_failures(request: web.Request) -> web.Response:
    request.app[MODEL_KEY].clear_failures()
    return web.json_response({"ok": True})


def register_control_routes(app: web.Application) -> None:
    app.router.add_post("/_emulator/inbound", _inbound)
    app.router.add_get("/_emulator/messages", _messages)
    app.router.add_get("/_emulator/deliveries", _deliveries)
    app.router.add_post("/_emulator/status", _status)
    app.router.add_post("/_emulator/callbacks", _callbacks)
    app.router.add_post("/_emulator/fail_next", _fail_next)
    app.router.add_post("/_emulator/fail_all", _fail_all)
    app.router.add_post("/_emulator/clear_failures", _clear_failures)


__all__ = ["inbound_fields", "register_control_routes"]
