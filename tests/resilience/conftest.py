"""Fixtures and the figures summary of the resilience suite (helpers: resilience_support)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from resilience_support import LoopThread, figures_lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = figures_lines()
    if lines:
        terminalreporter.section("ratatosk resilience figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    """An event loop on its own thread, for code that runs ``asyncio.run`` itself (the CLI)."""
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()
