"""A blocking facade over the async connector, for code without an event loop (entry layer).

Django and Flask views, Celery tasks, scripts and the REPL call
:class:`SyncTwilioWhatsAppConnector` as they would any client library. It
does not reimplement anything: each facade runs one
``TwilioWhatsAppConnector`` on one event loop in one daemon thread, and every
call is a coroutine submitted to that loop, so the results, codes, retries
and connection pool are the async connector's own (adr/0017).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import math
import os
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self, TypedDict, TypeVar, Unpack

from .bootstrap import build_connector
from .domain.content import MediaContent
from .domain.message import Message
from .domain.result import (
    ConnectorException,
    ConnectorResult,
    ConnectorStatus,
    HealthReport,
    ReceiveResult,
    SendResult,
    StatusUpdate,
)
from .domain.schema import ChannelSchema
from .domain.settings import ConnectionSettings
from .domain.source import MessageSource
from .domain.status import ConnectorState
from .ports import (
    AccountResource,
    Clock,
    ConversationWindow,
    MediaPolicy,
    MessagingApi,
    RateLimiter,
    SendLedger,
    SignatureValidator,
    StatusTimeline,
    StatusTracker,
    Telemetry,
    TemplateCache,
    TemplateCatalog,
)
from .twilio.connector import TwilioWhatsAppConnector
from .twilio.media import MediaFile
from .twilio.resilience import SendPolicy
from .twilio.send import Delivery, RetryHook

T = TypeVar("T")

_NAME: Final = "SyncTwilioWhatsAppConnector"
_numbers = itertools.count(1)


class ConnectorOptions(TypedDict, total=False):
    """The async connector's keyword arguments, typed, so mypy checks what a facade passes on."""

    transport: MessagingApi | None
    signature_validator: SignatureValidator | None
    template_catalog: TemplateCatalog | None
    clock: Clock | None
    batch_concurrency: int
    owns_transport: bool | None
    send_policy: SendPolicy | None
    rng: random.Random | None
    conversation_window: ConversationWindow | None
    rate_limiter: RateLimiter | None
    send_ledger: SendLedger | None
    template_cache: TemplateCache | None
    status_tracker: StatusTracker | None
    telemetry: Telemetry | None
    on_retry: RetryHook | None


class _LoopThread:
    """One event loop, run for ever by one daemon thread, until :meth:`stop`.

    Daemon, so a process that forgets ``close()`` still exits; the facade
    closes it at exit anyway, so nothing is left half-open.
    """

    def __init__(self, name: str) -> None:
        self.pid: Final = os.getpid()  # a fork copies the loop but not its thread
        self.loop: Final = asyncio.new_event_loop()
        self.thread: Final = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self, last: Coroutine[Any, Any, None]) -> None:
        """Run ``last`` on the loop, then end the loop and its thread, whatever ``last`` did."""
        try:
            self.submit(last).result()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


class SyncTwilioWhatsAppConnector:
    """``TwilioWhatsAppConnector`` for callers that block: same methods, results and codes.

    Takes the async connector's arguments (``schema``, ``settings``,
    ``transport=``, ``send_policy=`` ...), plus ``timeout``: the most seconds
    a call waits (None: as long as the connector's own deadlines allow).
    Safe to share between threads: one instance per process is the intent.
    An ``on_retry`` hook runs on the facade's own thread, between retries.

    Nothing starts until the first call (or ``with``): a facade created at
    import time in a Django or Celery parent process starts its thread and
    connection pool in each worker after the fork, not in the parent. The
    first call also initialises the connector; settings that fail raise
    :class:`ConnectorException` with the code ``initialize()`` returned
    (as ``async with`` does), except from :meth:`initialize` and
    :meth:`get_health`, which report it.
    """

    def __init__(
        self,
        schema: ChannelSchema,
        settings: ConnectionSettings,
        *,
        timeout: float | None = None,
        **options: Unpack[ConnectorOptions],
    ) -> None:
        self._attach(TwilioWhatsAppConnector(schema, settings, **options), timeout)

    @classmethod
    def wrap(cls, connector: TwilioWhatsAppConnector, *, timeout: float | None = None) -> Self:
        """A facade over a connector built elsewhere (``bootstrap.build_connector`` ...).

        The connector must not be initialised yet: its adapters bind to the
        loop they first run on, and that must be the facade's.
        """
        if not isinstance(connector, TwilioWhatsAppConnector):
            raise TypeError("wrap takes a TwilioWhatsAppConnector")
        if connector.state is not ConnectorState.UNINITIALIZED:
            raise ValueError(
                f"wrap a connector before initialize() (this one is {connector.state.value}): "
                "the facade initialises it on its own event loop"
            )
        facade = cls.__new__(cls)
        facade._attach(connector, timeout)
        return facade

    @classmethod
    def from_env(
        cls,
        settings: ConnectionSettings | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Self:
        """Settings from ``TWILIO_*`` variables laid over ``settings``, as the CLI reads them."""
        return cls.wrap(build_connector(settings, environ=environ), timeout=timeout)

    def _attach(self, connector: TwilioWhatsAppConnector, timeout: float | None) -> None:
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout must be a positive number of seconds, or None")
        self._connector = connector
        self._timeout = timeout
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._started: ConnectorResult[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        running = self._runner is not None and not self._closed
        return f"{_NAME}({self._connector!r}, running={running}, closed={self._closed})"

    # --- lifecycle ------------------------------------------------------------------

    @property
    def state(self) -> ConnectorState:
        return self._connector.state

    @property
    def schema(self) -> ChannelSchema:
        return self._connector.schema

    @property
    def settings(self) -> ConnectionSettings:
        return self._connector.settings

    @property
    def closed(self) -> bool:
        return self._closed

    def initialize(self) -> ConnectorResult[None]:
        """Start the loop and check the settings now rather than at the first call.

        Codes: MISSING_CREDENTIALS, INVALID_CONNECTION_SETTINGS.
        """
        _refuse_inside_a_loop("initialize")
        with self._lock:
            return self._start("initialize")[1]

    def close(self) -> None:
        """Cancel calls still running, close the connection pool, end the thread; idempotent.

        Callers still waiting get a RuntimeError. Allowed from async code too:
        nothing it waits for runs on the caller's loop.
        """
        with self._lock:
            if self._closed:
                return
            runner = self._runner
            if runner is not None and threading.current_thread() is runner.thread:
                raise RuntimeError(f"{_NAME}.close() cannot run on the facade's own loop")
            self._closed = True
            self._runner = None
        if runner is not None:
            atexit.unregister(self.close)
            runner.stop(self._wind_down())

    def __enter__(self) -> Self:
        self.initialize().unwrap()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the connector's operations, blocking -----------------------------------------

    def send_message(self, message: Message) -> ConnectorResult[SendResult]:
        """As ``TwilioWhatsAppConnector.send_message``, with the same codes."""
        return self._call("send_message", lambda c: c.send_message(message))

    def recheck_message(
        self, message: Message, *, delivery: Delivery
    ) -> ConnectorResult[SendResult]:
        """As ``TwilioWhatsAppConnector.recheck_message``: an unknown outcome looked at again."""
        return self._call(
            "recheck_message", lambda c: c.recheck_message(message, delivery=delivery)
        )

    def send_batch(
        self, messages: Iterable[Message], *, max_concurrency: int | None = None
    ) -> tuple[ConnectorResult[SendResult], ...]:
        """Concurrent on the facade's loop, one result per message, in input order."""
        return self._call(
            "send_batch", lambda c: c.send_batch(messages, max_concurrency=max_concurrency)
        )

    def get_message_status(
        self, message_sid: str, *, prefer_tracked: bool = False
    ) -> ConnectorResult[StatusUpdate]:
        return self._call(
            "get_message_status",
            lambda c: c.get_message_status(message_sid, prefer_tracked=prefer_tracked),
        )

    def get_status_timeline(self, message_sid: str) -> StatusTimeline | None:
        return self._call("get_status_timeline", lambda c: c.get_status_timeline(message_sid))

    def receive_messages(self, source: MessageSource) -> ConnectorResult[ReceiveResult]:
        return self._call("receive_messages", lambda c: c.receive_messages(source))

    def receive_message_status(self, source: MessageSource) -> ConnectorResult[StatusUpdate]:
        return self._call("receive_message_status", lambda c: c.receive_message_status(source))

    def validate_signature(
        self, url: str, source: MessageSource, signature: str | None
    ) -> ConnectorResult[None]:
        """Pure, so it runs on the calling thread once the connector is initialised."""
        _refuse_inside_a_loop("validate_signature")
        with self._lock:
            self._ready("validate_signature")
        return self._connector.validate_signature(url, source, signature)

    def fetch_media(
        self, media: MediaContent | str, *, policy: MediaPolicy | None = None
    ) -> ConnectorResult[MediaFile]:
        """The whole body, as ``TwilioWhatsAppConnector.fetch_media`` reads it, same codes.

        No ``stream=True``: a ``MediaStream`` is iterated with ``async for`` on
        the facade's loop, which blocking code cannot do; the policy's byte
        limit still bounds what is held in memory.
        """
        return self._call("fetch_media", lambda c: c.fetch_media(media, policy=policy))

    def get_status(self) -> ConnectorResult[ConnectorStatus]:
        return self._call("get_status", lambda c: c.get_status())

    def get_health(self) -> ConnectorResult[HealthReport]:
        """Never raises for bad settings: an unhealthy connector is a report with issues."""
        return self._call("get_health", lambda c: c.get_health(), reports_settings=True)

    def test_connection(self) -> ConnectorResult[AccountResource]:
        return self._call("test_connection", lambda c: c.test_connection())

    # --- running coroutines on the facade's loop --------------------------------------

    def _call(
        self,
        operation: str,
        call: Callable[[TwilioWhatsAppConnector], Awaitable[T]],
        *,
        reports_settings: bool = False,
    ) -> T:
        _refuse_inside_a_loop(operation)
        with self._lock:  # held to submit, not to wait: close() cannot slip in between
            runner = self._ready(operation, reports_settings=reports_settings)
            future = runner.submit(_run(call, self._connector))
        try:
            return future.result(self._timeout)
        except concurrent.futures.CancelledError:
            raise RuntimeError(f"{_NAME} was closed while {operation}() was running") from None
        except TimeoutError:
            if future.done():  # the operation's own TimeoutError, not ours
                raise
            future.cancel()
            raise TimeoutError(
                f"{operation}() did not finish within {self._timeout} s and was cancelled; "
                "a send cancelled after reaching Twilio is kept as SEND_OUTCOME_UNKNOWN under "
                "its Message.id, so sending that id again never duplicates it"
            ) from None
        except BaseException:  # Ctrl-C in the waiting thread stops the operation too
            future.cancel()
            raise

    def _ready(self, operation: str, *, reports_settings: bool = False) -> _LoopThread:
        """The running loop, started (and the connector initialised) on first use; lock held."""
        runner, started = self._start(operation)
        if started.error is not None and not reports_settings:
            raise ConnectorException(started.error)
        return runner

    def _start(self, operation: str) -> tuple[_LoopThread, ConnectorResult[None]]:
        if self._closed:
            raise RuntimeError(
                f"{operation}() on a closed {_NAME}: its thread and connections are gone; "
                "create a new one"
            )
        runner = self._runner
        if runner is None:
            runner = self._runner = _LoopThread(f"ratatosk-sync-{next(_numbers)}")
            atexit.register(self.close)
        elif runner.pid != os.getpid():
            raise RuntimeError(
                f"this {_NAME} was started in process {runner.pid}, before a fork; its loop "
                "did not survive into this one: create the facade in each worker process "
                "(created before the fork is fine, as long as nothing called it)"
            )
        if self._started is None:  # settings never change, so once is enough
            self._started = runner.submit(self._connector.initialize()).result()
        return runner, self._started

    async def _wind_down(self) -> None:
        """Cancel what is still running, then close the connector and the loop's helpers."""
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        try:
            await self._connector.shutdown()
        finally:
            loop = asyncio.get_running_loop()
            await loop.shutdown_asyncgens()
            await loop.shutdown_default_executor()


async def _run(
    call: Callable[[TwilioWhatsAppConnector], Awaitable[T]], connector: TwilioWhatsAppConnector
) -> T:
    # The coroutine is made here, on the loop, so a refused call leaves none un-awaited.
    return await call(connector)


def _refuse_inside_a_loop(operation: str) -> None:
    """Blocking a running loop stalls it, and deadlocks when Twilio's side runs on that loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{_NAME}.{operation}() blocks, and this thread is running an event loop (it was "
        "called from async code): await the async API instead, "
        "ratatosk.twilio.TwilioWhatsAppConnector, which takes the same arguments"
    )


__all__ = ["ConnectorOptions", "SyncTwilioWhatsAppConnector"]
