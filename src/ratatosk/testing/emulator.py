"""The HTTP emulator on a loopback port, served from a thread of its own (testing layer).

A test that exercises the real HTTP path needs a Twilio to talk to, whether
the test is synchronous, runs on pytest-asyncio's loop or on another plugin's.
Serving the emulator from its own thread and event loop makes it independent
of all of them: the test only sees a URL and credentials, as it would see
Twilio. The ``twilio_emulator`` pytest fixture is one of these.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..domain.settings import ConnectionSettings
from ..emulator.app import RunningEmulator, start_emulator
from ..emulator.model import TwilioModel
from ..ports import MediaPolicy

T = TypeVar("T")


class BackgroundEmulator:
    """A started emulator (``url``, ``account_sid``, ``auth_token``) until :meth:`close`.

    ``options`` go to :func:`ratatosk.emulator.app.build_model` (for example
    ``step_delay=0.01`` or ``rate_429=0.1``). The model is driven by the
    server's thread, so change it through :meth:`control` (or the helpers
    that use it) rather than directly while requests are in flight.
    """

    def __init__(self, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ratatosk-twilio-emulator", daemon=True
        )
        self._thread.start()
        try:
            self._running: RunningEmulator = self._run(start_emulator(**options))
        except BaseException:
            self._stop_loop()
            raise
        self.url = self._running.url
        self.media_url = self._running.media_url
        self.account_sid = self._running.account_sid
        self.closed = False

    @property
    def auth_token(self) -> str:
        return self._running.auth_token

    @property
    def model(self) -> TwilioModel:
        """The model behind the server, for inspection (``outbound``, ``attempts``, ...)."""
        return self._running.model

    def __repr__(self) -> str:
        return f"BackgroundEmulator(url={self.url!r}, account_sid={self.account_sid!r})"

    def settings(self) -> ConnectionSettings:
        """Connection settings that point a connector at this emulator (both APIs)."""
        return (
            ConnectionSettings()
            .set_parameter("AccountSid", self.account_sid)
            .set_parameter("AuthToken", self.auth_token)
            .set_parameter("ApiBaseUrl", self.url)
            .set_parameter("ContentApiBaseUrl", self.url)
        )

    def media_policy(self, **options: Any) -> MediaPolicy:
        """A ``MediaPolicy`` for ``fetch_media`` that allows this emulator's media origin.

        The emulator's Media URLs redirect to a second loopback origin, as
        Twilio's redirect to its CDN; ``options`` are the policy's other fields.
        """
        return MediaPolicy(allowed_hosts=(self._running.media_host,), **options)

    def control(self, change: Callable[[TwilioModel], T]) -> T:
        """Run ``change(model)`` on the server's thread, between requests, and return its value."""
        return self._run(self._apply(change))

    def fail_next(self, code: int, status: int = 400, **options: Any) -> None:
        """Script the next create's error, as :meth:`TwilioModel.fail_next` does."""
        self.control(lambda model: model.fail_next(code, status, **options))

    def fail_all(self, code: int, status: int = 400, **options: Any) -> None:
        """Every create answers this error until :meth:`clear_failures` (retries included)."""
        self.control(lambda model: model.fail_all(code, status, **options))

    def clear_failures(self) -> None:
        self.control(lambda model: model.clear_failures())

    def set_status(self, sid: str, status: str, error_code: int | None = None) -> None:
        """Force a message's status; its status callback is sent as Twilio would."""
        self.control(lambda model: model.set_status(sid, status, error_code))

    def close(self) -> None:
        """Stop the server and its thread; idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self._run(self._running.close())
        finally:
            self._stop_loop()

    def __enter__(self) -> BackgroundEmulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _apply(self, change: Callable[[TwilioModel], T]) -> T:
        return change(self._running.model)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


__all__ = ["BackgroundEmulator"]
