"""The blocking facade, ``ratatosk.sync``, from plain threads against the emulator over HTTP.

It must answer as the async connector does, from many threads at once, on
one loop and one connection pool; leave no thread, loop or session behind
once closed; refuse at once when called from async code; refuse after close;
and keep the token out of its repr. The README's Flask and Django recipes run
here as written, their view bodies called from threads of another process.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import os
import select
import signal
import subprocess
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest

from ratatosk import (
    ConnectionSettings,
    ConnectorException,
    ConnectorResult,
    ConnectorState,
    Message,
    MessageBuilder,
    MessageSource,
    TemplateContent,
)
from ratatosk.adapters.http11 import ConnectionPool  # the default transport's pool
from ratatosk.bootstrap import build_connector
from ratatosk.emulator.app import start_emulator
from ratatosk.ports import StatusTimeline
from ratatosk.sync import ConnectorOptions, SyncTwilioWhatsAppConnector
from ratatosk.testing import BackgroundEmulator, InboundMedia
from ratatosk.twilio import (
    SendPolicy,
    TwilioChannelSchemas,
    TwilioWhatsAppConnector,
    compute_signature,
)
from readme_text import blocks, files, section

T = TypeVar("T")

SCHEMA = TwilioChannelSchemas.TWILIO_WHATSAPP
SENDER = "whatsapp:+14155238886"
CUSTOMERS = ("whatsapp:+15550002222", "whatsapp:+15550003333", "whatsapp:+15550004444")
WEBHOOK = "https://hooks.example.com/webhooks/twilio/whatsapp"
PYTHON = Path(sys.executable)


@pytest.fixture(scope="module")
def emulator() -> Iterator[BackgroundEmulator]:
    with BackgroundEmulator() as running:
        yield running


def settings_for(emulator: BackgroundEmulator) -> ConnectionSettings:
    return emulator.settings().set_parameter("FromNumber", SENDER)


def text(body: str, *, to: str = CUSTOMERS[0], message_id: str | None = None) -> Message:
    builder = MessageBuilder().to_phone(to).with_text(body)
    return (builder.with_id(message_id) if message_id else builder).build()


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """``work(0) .. work(count - 1)`` on plain threads released together; re-raise any failure."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def body(number: int) -> None:
        try:
            start.wait()
            work(number)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def live(kind: type[T]) -> list[T]:
    """Every object of ``kind`` still reachable in this process."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, kind)]


def new_since(before: list[T], now: list[T]) -> list[T]:
    known = {id(o) for o in before}  # ``before`` holds them, so their ids are not reused
    return [o for o in now if id(o) not in known]


def started_since(before: set[threading.Thread]) -> set[threading.Thread]:
    """Threads alive now that were not before (the count, untroubled by others ending)."""
    return set(threading.enumerate()) - before


def facade_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ratatosk-sync-")]


# --- many threads, one loop, one pool ---------------------------------------------------------


def test_sixteen_threads_send_twenty_each_and_every_message_is_stored_once(
    emulator: BackgroundEmulator,
) -> None:
    """320 sends from 16 threads at once: each its own SID, each stored once, over one pool."""
    sessions_before = live(ConnectionPool)
    stored_before = emulator.control(lambda model: model.stored_count)
    results: dict[tuple[int, int], ConnectorResult[Any]] = {}
    with SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator)) as twilio:

        def send_twenty(thread: int) -> None:
            for n in range(20):
                message = text(
                    f"sync {thread}-{n}", to=CUSTOMERS[n % 3], message_id=f"sync-{thread}-{n}"
                )
                results[thread, n] = twilio.send_message(message)

        run_threads(16, send_twenty)
        assert len(facade_threads()) == 1
        opened = new_since(sessions_before, live(ConnectionPool))
        assert len(opened) == 1, "every thread's sends share the facade's one connection pool"
    assert len(results) == 320
    for (thread, n), result in results.items():
        assert result.successful, result.error
        assert result.value.message_id == f"sync-{thread}-{n}"
        assert result.value.data["to"] == CUSTOMERS[n % 3]
    stored = emulator.control(lambda model: model.outbound)[stored_before:]
    assert Counter(m.body for m in stored) == Counter(f"sync {t}-{n}" for t, n in results)
    by_body = {m.body: m.sid for m in stored}
    assert all(
        by_body[f"sync {t}-{n}"] == r.value.provider_message_id for (t, n), r in results.items()
    )
    assert opened[0].closed


def test_every_method_answers_from_threads_as_the_async_connector_does(
    emulator: BackgroundEmulator,
) -> None:
    """Same values and codes, method by method, from the facade and from ``await``."""
    settings = settings_for(emulator)
    photo = bytes(range(256)) * 40
    form = emulator.control(
        lambda model: model.inbound_message(
            CUSTOMERS[1],
            SENDER,
            body="hi there",
            profile_name="Ada",
            media=[InboundMedia("image/jpeg", photo)],
            api_base=emulator.url,
            account_sid=model.main_account.sid,
        )
    )
    inbound = MessageSource.url_post(urlencode(form))
    signature = compute_signature(emulator.auth_token, WEBHOOK, form)

    def steps(api: Any, sid: str) -> list[tuple[str, Any]]:
        """(name, result or coroutine) for every operation; ``sid`` is a stored message."""
        status_form = emulator.control(lambda model: model.status_callback_form(sid, "delivered"))
        callback = MessageSource.url_post(urlencode(status_form))
        return [
            ("send", api.send_message(text("same as async"))),
            ("bad recipient", api.send_message(text("x", to="whatsapp:+1"))),
            ("template", api.send_message(
                MessageBuilder().to_phone(CUSTOMERS[0]).with_content(
                    TemplateContent("order_confirmed", {"order_id": "1", "delivery_date": "soon"})
                ).build()
            )),
            ("unapproved", api.send_message(
                MessageBuilder().to_phone(CUSTOMERS[0]).with_content(
                    TemplateContent("pending_promo", {})
                ).build()
            )),
            ("batch", api.send_batch([text("b1"), text("b2", to="nope")], max_concurrency=2)),
            ("status", api.get_message_status(sid)),
            ("not a sid", api.get_message_status("nope")),
            ("unknown sid", api.get_message_status("SM" + "0" * 32)),
            ("inbound", api.receive_messages(inbound)),
            ("callback", api.receive_message_status(callback)),
            ("timeline", api.get_status_timeline(sid)),
            ("tracked", api.get_message_status(sid, prefer_tracked=True)),
            ("unreadable", api.receive_messages(MessageSource.url_post("AccountSid=AC1"))),
            ("signed", api.validate_signature(WEBHOOK, inbound, signature)),
            ("forged", api.validate_signature(WEBHOOK, inbound, "forged")),
            ("media", api.fetch_media(form["MediaUrl0"], policy=emulator.media_policy())),
            ("media elsewhere", api.fetch_media(form["MediaUrl0"])),
            ("connector status", api.get_status()),
            ("health", api.get_health()),
            ("account", api.test_connection()),
        ]  # fmt: skip

    def shape(result: Any) -> Any:
        """What must agree: success, code and provider code, and the parts that do not vary."""
        if isinstance(result, tuple):
            return tuple(shape(r) for r in result)
        if result is None or isinstance(result, StatusTimeline):
            return ("timeline", result and (result.sid, result.current.status))
        if result.error is not None:
            return ("failed", result.error.code, result.error.provider_code)
        value = result.value
        kind = type(value).__name__
        if kind == "SendResult":
            return ("sent", value.status, value.data["to"])
        if kind == "StatusUpdate":  # a stored message's status moves on with time
            return ("status", value.message_id)
        if kind == "ReceiveResult":
            return ("received", [(m.content, m.sender, m.properties) for m in value.messages])
        if kind == "ConnectorStatus":
            return ("state", value.state, value.data["account_status"])
        if kind == "HealthReport":
            return ("health", value.healthy, value.issues)
        if kind == "MediaFile":
            return ("media", value.content_type, value.data)
        if kind == "AccountResource":
            return ("account", value.sid, value.status)
        return ("value", value)

    with SyncTwilioWhatsAppConnector(SCHEMA, settings) as twilio:
        sid = twilio.send_message(text("first")).unwrap().provider_message_id

    async def through_await() -> list[tuple[str, Any]]:
        async with TwilioWhatsAppConnector(SCHEMA, settings) as connector:
            done = []
            for name, call in steps(connector, sid):
                done.append((name, await call if inspect.isawaitable(call) else call))
            return done

    expected = [(name, shape(result)) for name, result in asyncio.run(through_await())]
    answers: list[list[tuple[str, Any]]] = []
    with SyncTwilioWhatsAppConnector(SCHEMA, settings) as twilio:
        run_threads(4, lambda _: answers.append([(n, shape(r)) for n, r in steps(twilio, sid)]))
    assert len(answers) == 4
    for answer in answers:
        assert answer == expected
    outcomes = dict(expected)
    assert outcomes["send"][0] == "sent"
    assert outcomes["bad recipient"][1] in {"INVALID_RECIPIENT", "INVALID_WHATSAPP_NUMBER"}
    assert outcomes["unapproved"][1] == "TEMPLATE_NOT_APPROVED"
    assert outcomes["not a sid"][1] == "STATUS_QUERY_FAILED"
    assert outcomes["forged"][1] == "INVALID_SIGNATURE"
    assert outcomes["signed"] == ("value", None)
    assert outcomes["health"][1] is True
    assert outcomes["media"] == ("media", "image/jpeg", photo)
    assert outcomes["media elsewhere"][1] == "MEDIA_REDIRECT_NOT_ALLOWED"
    assert outcomes["timeline"] == ("timeline", (sid, "delivered"))


def test_a_scripted_twilio_refusal_reaches_the_caller_with_its_code(
    emulator: BackgroundEmulator,
) -> None:
    """Twilio's 21610 (unsubscribed) is INVALID_RECIPIENT with provider code 21610, as async."""
    with SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator)) as twilio:
        emulator.fail_next(21610)
        refused = twilio.send_message(text("stop"))
    assert refused.error is not None
    assert (refused.error.code, refused.error.provider_code) == ("INVALID_RECIPIENT", 21610)


def test_exceptions_of_the_connector_reach_the_calling_thread(emulator: BackgroundEmulator) -> None:
    """Misuse raises in the caller's thread, as it does from ``await``."""
    with SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator)) as twilio:
        with pytest.raises(TypeError, match="MessageSource"):
            twilio.receive_messages("From=whatsapp%3A%2B15550002222")  # type: ignore[arg-type]
        assert twilio.get_health().unwrap().healthy  # and the facade carries on


# --- settings, constructors ---------------------------------------------------------------------


def test_bad_settings_raise_their_code_at_first_use_and_health_reports_them() -> None:
    """MISSING_CREDENTIALS from initialize(), as ConnectorException from a send, in health."""
    settings = ConnectionSettings().set_parameter("AccountSid", "AC" + "1" * 32)
    expected = asyncio.run(TwilioWhatsAppConnector(SCHEMA, settings).initialize())
    twilio = SyncTwilioWhatsAppConnector(SCHEMA, settings)
    try:
        assert twilio.initialize() == expected
        assert expected.error is not None
        assert expected.error.code == "MISSING_CREDENTIALS"
        with pytest.raises(ConnectorException) as raised:
            twilio.send_message(text("x"))
        assert raised.value.error == expected.error
        health = twilio.get_health().unwrap()
        assert not health.healthy
        assert any("MISSING_CREDENTIALS" in issue for issue in health.issues)
        with pytest.raises(ConnectorException), twilio:
            pass
    finally:
        twilio.close()


def test_from_env_and_wrap_build_the_connector_the_composition_root_builds(
    emulator: BackgroundEmulator,
) -> None:
    """from_env reads the TWILIO_* variables; wrap takes a connector not yet initialised."""
    environ = {
        "TWILIO_ACCOUNT_SID": emulator.account_sid,
        "TWILIO_AUTH_TOKEN": emulator.auth_token,
        "TWILIO_API_BASE_URL": emulator.url,
        "TWILIO_WHATSAPP_FROM": SENDER,
    }
    with SyncTwilioWhatsAppConnector.from_env(environ=environ, timeout=30) as twilio:
        assert twilio.settings.get_string("FromNumber") == SENDER
        assert twilio.send_message(text("from env")).successful
    policy = SendPolicy(rate_per_sender=None)
    connector = build_connector(settings_for(emulator), send_policy=policy)
    with SyncTwilioWhatsAppConnector.wrap(connector) as twilio:
        assert twilio.send_message(text("wrapped")).successful
        assert connector.state is ConnectorState.READY
    with pytest.raises(ValueError, match="before initialize"):
        SyncTwilioWhatsAppConnector.wrap(connector)
    with pytest.raises(ValueError, match="timeout"):
        SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator), timeout=0)


def test_the_facade_takes_every_keyword_of_the_async_connector() -> None:
    """ConnectorOptions names each keyword argument of TwilioWhatsAppConnector, and no other."""
    parameters = inspect.signature(TwilioWhatsAppConnector.__init__).parameters.values()
    keywords = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(ConnectorOptions.__annotations__) == keywords


def test_the_facade_has_every_operation_of_the_async_connector() -> None:
    """Each public method (bar the async lifecycle) exists here with the same parameters."""
    lifecycle = {"shutdown"}  # the facade's is close()
    # On purpose: a MediaStream is iterated with ``async for``, so media come whole.
    left_out = {"fetch_media": {"stream"}}
    for name, method in inspect.getmembers(TwilioWhatsAppConnector, inspect.isfunction):
        if name.startswith("_") or name in lifecycle:
            continue
        mirror = getattr(SyncTwilioWhatsAppConnector, name, None)
        assert mirror is not None, f"SyncTwilioWhatsAppConnector has no {name}()"
        expected = inspect.signature(method).parameters
        expected = {k: v for k, v in expected.items() if k not in left_out.get(name, set())}
        assert dict(inspect.signature(mirror).parameters) == expected, name


# --- nothing leaks ------------------------------------------------------------------------------


def test_close_ends_the_thread_closes_the_loop_and_the_connection_pool(
    emulator: BackgroundEmulator,
) -> None:
    """Nothing runs before the first call; after close() the thread, loop and session are done."""
    threads = set(threading.enumerate())
    loops_before = live(asyncio.AbstractEventLoop)
    sessions_before = live(ConnectionPool)
    twilio = SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator))
    assert started_since(threads) == set(), "constructing starts nothing"
    assert twilio.test_connection().successful
    (thread,) = facade_threads()
    (loop,) = new_since(loops_before, live(asyncio.AbstractEventLoop))
    (session,) = new_since(sessions_before, live(ConnectionPool))
    assert thread.is_alive()
    assert thread.daemon
    assert loop.is_running()
    assert not session.closed
    twilio.close()
    assert not thread.is_alive()
    assert loop.is_closed()
    assert session.closed
    assert started_since(threads) == set()
    twilio.close()  # twice is fine


def test_twenty_facades_opened_and_closed_leave_no_thread_loop_or_session(
    emulator: BackgroundEmulator,
) -> None:
    """Open, use and close 20 facades: thread count, open loops and open sessions as before."""
    threads = set(threading.enumerate())
    loops_before = live(asyncio.AbstractEventLoop)
    sessions_before = live(ConnectionPool)
    for n in range(20):
        with SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator)) as twilio:
            assert twilio.send_message(text(f"open-close {n}")).successful
            assert len(started_since(threads)) == 1
    assert started_since(threads) == set()
    assert facade_threads() == []
    assert [
        loop for loop in new_since(loops_before, live(asyncio.AbstractEventLoop))
        if not loop.is_closed()
    ] == []  # fmt: skip
    assert [
        session for session in new_since(sessions_before, live(ConnectionPool))
        if not session.closed
    ] == []  # fmt: skip


def test_a_call_past_its_timeout_is_cancelled_and_never_sent_twice() -> None:
    """TimeoutError for a send Twilio is slow to answer; the send is cancelled, not resent.

    Cancelled after reaching Twilio, the send's id is remembered as
    SEND_OUTCOME_UNKNOWN (while the cancellation lands, SEND_IN_PROGRESS);
    left running, it would end as Twilio's success instead.
    """
    with BackgroundEmulator(rate_slow=1.0, slow_seconds=3.0) as slow:
        with SyncTwilioWhatsAppConnector(SCHEMA, settings_for(slow), timeout=0.5) as twilio:
            message = text("slow", message_id="slow-1")
            with pytest.raises(TimeoutError, match="SEND_OUTCOME_UNKNOWN"):
                twilio.send_message(message)
            codes = []
            for _ in range(100):
                again = twilio.send_message(message)
                codes.append(again.error.code if again.error else "sent")
                if codes[-1] != "SEND_IN_PROGRESS":
                    break
                threading.Event().wait(0.05)
        attempts = slow.control(lambda model: len(model.attempts))
    assert codes[-1] == "SEND_OUTCOME_UNKNOWN", codes
    assert attempts == 1


def test_a_facade_called_before_a_fork_refuses_in_the_child(emulator: BackgroundEmulator) -> None:
    """The child has the loop's memory but not its thread: a clear error, not a hang."""
    with SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator)) as twilio:
        assert twilio.test_connection().successful
        read, write = os.pipe()
        with warnings.catch_warnings():  # newer Pythons warn of forking with threads: we mean it
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: report what the call did, then leave at once
            try:
                twilio.get_status()
                report = "no error"
            except RuntimeError as exc:
                report = str(exc)
            os.write(write, report.encode())
            os._exit(0)
        os.close(write)
        answered, _, _ = select.select([read], [], [], 60)  # a child that hangs fails, not us
        if not answered:
            os.kill(pid, signal.SIGKILL)
        with os.fdopen(read, encoding="utf-8") as pipe:
            report = pipe.read() if answered else "the child hung"
        os.waitpid(pid, 0)
        assert "before a fork" in report, report
        assert twilio.test_connection().successful  # the parent's facade is untouched


# --- misuse -------------------------------------------------------------------------------------

CALLS: list[tuple[str, Callable[[SyncTwilioWhatsAppConnector], object]]] = [
    ("initialize", lambda t: t.initialize()),
    ("send_message", lambda t: t.send_message(text("x"))),
    ("send_batch", lambda t: t.send_batch([text("x")])),
    ("get_message_status", lambda t: t.get_message_status("SM" + "0" * 32)),
    ("receive_messages", lambda t: t.receive_messages(MessageSource.url_post(""))),
    ("receive_message_status", lambda t: t.receive_message_status(MessageSource.url_post(""))),
    ("validate_signature", lambda t: t.validate_signature(WEBHOOK, MessageSource.url_post(""), "")),
    ("get_status_timeline", lambda t: t.get_status_timeline("SM" + "0" * 32)),
    ("fetch_media", lambda t: t.fetch_media("https://api.twilio.com/x")),
    ("get_status", lambda t: t.get_status()),
    ("get_health", lambda t: t.get_health()),
    ("test_connection", lambda t: t.test_connection()),
    ("with", lambda t: t.__enter__()),
]


async def test_called_from_async_code_every_method_refuses_at_once() -> None:
    """With Twilio served on the caller's own loop, blocking would deadlock: it raises instead."""
    served = await start_emulator()  # on this test's loop, as an aiohttp app's test server is
    settings = (
        ConnectionSettings()
        .set_parameter("AccountSid", served.account_sid)
        .set_parameter("AuthToken", served.auth_token)
        .set_parameter("ApiBaseUrl", served.url)
        .set_parameter("FromNumber", SENDER)
    )
    threads = set(threading.enumerate())
    twilio = SyncTwilioWhatsAppConnector(SCHEMA, settings)
    try:
        for name, call in CALLS:
            with pytest.raises(RuntimeError, match="await the async API") as raised:
                call(twilio)
            assert "TwilioWhatsAppConnector" in str(raised.value), name
        assert started_since(threads) == set(), "refused before anything started"
        # The same facade from a worker thread, which runs no loop, is fine.
        sent = await asyncio.to_thread(twilio.send_message, text("from a worker thread"))
        assert sent.successful
    finally:
        twilio.close()  # allowed here: closing waits on nothing of this loop
        await served.close()
    assert facade_threads() == []


def test_after_close_every_method_raises_a_clear_error(emulator: BackgroundEmulator) -> None:
    """A closed facade refuses every call, whether it had started or not; closing again is fine."""
    started = SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator))
    assert started.get_health().unwrap().healthy
    never_started = SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator))
    for twilio in (started, never_started):
        twilio.close()
        twilio.close()
        assert twilio.closed
        for name, call in CALLS:
            with pytest.raises(RuntimeError, match="closed") as raised:
                call(twilio)
            assert "create a new one" in str(raised.value), name


def test_the_token_is_in_no_repr_or_error(emulator: BackgroundEmulator) -> None:
    """Before, during and after use, and in the errors of bad settings and misuse."""
    token = emulator.auth_token
    twilio = SyncTwilioWhatsAppConnector(SCHEMA, settings_for(emulator))
    shown = [repr(twilio), str(twilio)]
    twilio.test_connection().unwrap()
    shown += [repr(twilio), str(twilio)]
    twilio.close()
    shown += [repr(twilio), str(twilio)]
    with pytest.raises(RuntimeError) as closed:
        twilio.get_status()
    shown.append(str(closed.value))
    bad = settings_for(emulator).set_parameter("AccountSid", "not a sid")
    broken = SyncTwilioWhatsAppConnector(SCHEMA, bad)
    with pytest.raises(ConnectorException) as refused:
        broken.send_message(text("x"))
    shown += [str(refused.value), repr(refused.value.error), repr(broken)]
    broken.close()
    assert "closed=True" in shown[4]
    assert all(token not in line for line in shown), shown


# --- the README's recipes -----------------------------------------------------------------------

DRIVER = """
import json, threading
import whatsapp

answers = []
threads = [
    threading.Thread(target=lambda n=n: answers.append(whatsapp.notify("{to}", f"recipe {{n}}")))
    for n in range(8)
]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({{
    "notify": answers,
    "confirm": whatsapp.confirm_order("{to}", "ORD-7"),
    "refused": whatsapp.notify("whatsapp:+1", "nobody"),
}}))
"""


def test_the_readme_view_recipes_run_as_written(
    emulator: BackgroundEmulator, tmp_path: Path
) -> None:
    """whatsapp.py from the README, its functions called from 8 threads of another process.

    The Flask and Django views over it run in tests/integration/test_framework_recipes.py.
    """
    [intro] = blocks(section("## Without an event loop"), "python")
    module = files(section("## Frameworks"))["whatsapp.py"]
    (tmp_path / "whatsapp.py").write_text(module, encoding="utf-8")
    (tmp_path / "intro.py").write_text(intro, encoding="utf-8")
    (tmp_path / "driver.py").write_text(DRIVER.format(to=CUSTOMERS[2]), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "RATATOSK_"))}
    environ |= {
        "TWILIO_ACCOUNT_SID": emulator.account_sid,
        "TWILIO_AUTH_TOKEN": emulator.auth_token,
        "TWILIO_API_BASE_URL": emulator.url,
        "TWILIO_WHATSAPP_FROM": SENDER,
    }
    stored_before = emulator.control(lambda model: model.stored_count)
    runs = [
        subprocess.run(
            [str(PYTHON), "-W", "error", script],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        for script in ("intro.py", "driver.py")
    ]
    for done in runs:
        assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    assert runs[0].stdout.startswith("SM")
    out = json.loads(runs[1].stdout)
    assert len(out["notify"]) == 8
    assert all(status == 202 and body["status"] == "Queued" for body, status in out["notify"])
    assert out["confirm"][1] == 202
    assert out["refused"][1] == 422
    assert out["refused"][0]["code"] in {"INVALID_RECIPIENT", "INVALID_WHATSAPP_NUMBER"}
    stored = emulator.control(lambda model: model.outbound)[stored_before:]
    assert Counter(m.to for m in stored) == {CUSTOMERS[0]: 1, CUSTOMERS[2]: 9}
    assert sum(m.content_sid is not None for m in stored) == 1
