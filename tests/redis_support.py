"""A real ``redis-server`` on loopback, started and stopped by the test suite (adr/0017).

Registered by ``tests/conftest.py`` (``pytest_plugins``), so every test can ask for:

* ``redis_server`` (session): the shared :class:`RedisServer`, started on
  first use and stopped when the session ends; ``.url``, ``.port``,
  ``.client()`` (an asyncio client; close it);
* ``redis_client``: an asyncio client on the shared server, closed after the test;
* ``redis_prefix``: a key prefix no other test uses (tests share the server,
  never their keys, so nothing needs flushing);
* ``own_redis_server``: a private server for one test, which it may
  ``stop()`` and ``start()`` again on the same port (a Redis outage).

Code that builds adapters outside a fixture (the contract suites' tables)
calls :func:`shared_redis` and uses a :class:`RedisTimeMachine` for time.

The server is Debian's ``redis-server`` binary (``make install`` installs it
when missing and run as root), or the one ``RATATOSK_REDIS_SERVER`` names.
Without one, every test that needs Redis fails with :data:`HOW_TO_GET_ONE`:
never skipped, so a CI run without Redis cannot pass by testing less.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

HOW_TO_GET_ONE: Final = (
    "these tests need a real redis-server on loopback, and none was found. "
    "Install it: `apt-get install redis-server` on Debian or Ubuntu (`make install` "
    "does it when run as root), `brew install redis` on macOS; or set "
    "RATATOSK_REDIS_SERVER to the path of a redis-server binary."
)
#: Seconds a starting server has to answer PING.
START_TIMEOUT: Final = 15.0


def find_redis_server() -> str:
    """The redis-server binary, or the test fails saying how to get one."""
    named = os.environ.get("RATATOSK_REDIS_SERVER", "").strip()
    candidates = [named] if named else []
    candidates += [shutil.which("redis-server") or "", "/usr/bin/redis-server"]
    candidates.append("/usr/sbin/redis-server")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(HOW_TO_GET_ONE, pytrace=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, no persistence, its files in ``directory``.

    The port is chosen free at the first :meth:`start` and kept, so a test
    can stop the server and start it again where its clients expect it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.running})"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        binary = find_redis_server()
        for _ in range(5):  # the free port can be taken before the server binds it
            port = self.port or _free_port()
            if self._spawn(binary, port):
                self.port = port
                return
            if self.port:
                break
        log = self._log()
        pytest.fail(f"redis-server did not start on 127.0.0.1:{port}:\n{log}", pytrace=False)

    def _spawn(self, binary: str, port: int) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no"]
        args += ["--logfile", str(self.directory / "redis.log")]
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _answers_ping(port):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def _log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        return "(no log)"

    def stop(self) -> None:
        """Stop the server (clients then get connection errors); safe when stopped."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def client(self, **options: Any) -> Redis:
        """An asyncio client on this server (the caller closes it with ``aclose()``).

        Its pool queues calls past 64 connections, as ``RedisStores.from_url`` does.
        """
        options = {"max_connections": 64, "decode_responses": True, **options}
        return Redis.from_pool(BlockingConnectionPool.from_url(self.url, **options))


_shared: RedisServer | None = None


def shared_redis() -> RedisServer:
    """The session's server, started on first use; stopped at the end of the session."""
    global _shared  # noqa: PLW0603 - one server per test session, by design
    if _shared is None or not _shared.running:
        server = RedisServer(Path(tempfile.mkdtemp(prefix="ratatosk-redis-")))
        server.start()
        _shared = server
    return _shared


def fresh_prefix() -> str:
    """A key prefix of its own for one test (tests share a server, never keys)."""
    return f"test-{secrets.token_hex(6)}:"


_SHIFT_TTLS: Final = """
for _, key in ipairs(KEYS) do
  local left = redis.call('PTTL', key)
  if left > 0 then
    left = left - tonumber(ARGV[1])
    if left <= 0 then redis.call('DEL', key) else redis.call('PEXPIRE', key, left) end
  end
end
return 0
"""


class RedisTimeMachine:
    """Time for Redis adapters under test: a manual clock, and key expiries that follow it.

    The adapters read time from two places only: the ``now`` they are given
    (this object) and Redis's key expiry. :meth:`advance` moves both, so a
    suite can let an hour pass in an instant and without timing luck: the
    clock moves forward, and every key under :attr:`prefix` has that much
    less left to live (a key whose time is up is deleted, as Redis would).
    """

    def __init__(self, server: RedisServer) -> None:
        self.client = server.client()
        self.prefix = fresh_prefix()
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        keys = [key async for key in self.client.scan_iter(match=self.prefix + "*", count=1000)]
        if keys:
            await self.client.eval(_SHIFT_TTLS, len(keys), *keys, round(seconds * 1000))

    async def close(self) -> None:
        await self.client.aclose()


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    """The shared redis-server (fails, never skips, when none can be had)."""
    return shared_redis()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = redis_server.client()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_prefix() -> str:
    return fresh_prefix()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server for this test alone, free to be stopped and started again."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _shared is not None:
        _shared.stop()
        shutil.rmtree(_shared.directory, ignore_errors=True)
