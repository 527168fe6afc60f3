"""Progress of a long run, on stderr so stdout stays a transcript (CLI layer).

On a terminal, with the ``cli`` extra installed, a rich progress bar;
elsewhere (a pipe, a CI log, no rich) one plain line every few seconds,
which a log keeps readable where a redrawn bar would be noise.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Protocol, TextIO

#: What ``--progress`` accepts.
MODES = ("auto", "bar", "lines", "none")


class Progress(Protocol):
    def advance(self, sent: bool) -> None: ...

    def close(self) -> None: ...


def progress_for(
    mode: str, total: int, stream: TextIO, *, label: str = "sending"
) -> Progress | str:
    """The progress display ``mode`` asks for, or why it cannot be had.

    ``label`` names what the bar counts (the sends, or the workers' results).
    """
    has_rich = importlib.util.find_spec("rich") is not None
    if mode == "bar" and not has_rich:
        return "the progress bar needs rich: pip install 'ratatosk-twilio[cli]'"
    if mode == "none":
        return _Silent()
    if mode == "bar" or (mode == "auto" and has_rich and stream.isatty()):
        return _Bar(total, stream, label)
    return _Lines(total, stream)


class _Tally:
    def __init__(self, total: int, monotonic: Callable[[], float]) -> None:
        self.total = total
        self.sent = self.failed = 0
        self._monotonic = monotonic
        self._started = monotonic()

    def count(self, sent: bool) -> None:
        if sent:
            self.sent += 1
        else:
            self.failed += 1

    def rate(self) -> float:
        elapsed = self._monotonic() - self._started
        return (self.sent + self.failed) / elapsed if elapsed > 0 else 0.0

    def left(self) -> float | None:
        rate = self.rate()
        return (self.total - self.sent - self.failed) / rate if rate > 0 else None


class _Silent:
    def advance(self, sent: bool) -> None:
        pass

    def close(self) -> None:
        pass


class _Lines:
    """A line every ``every`` seconds and one at the end."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        every: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tally = _Tally(total, monotonic)
        self._stream = stream
        self._every = every
        self._monotonic = monotonic
        self._last = monotonic()

    def advance(self, sent: bool) -> None:
        self._tally.count(sent)
        now = self._monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._print()

    def close(self) -> None:
        self._print()

    def _print(self) -> None:
        t = self._tally
        left = t.left()
        eta = (
            f", about {left:.0f}s left" if left is not None and t.sent + t.failed < t.total else ""
        )
        print(
            f"progress: {t.sent + t.failed}/{t.total}, sent {t.sent}, failed {t.failed}, "
            f"{t.rate():.1f}/s{eta}",
            file=self._stream,
            flush=True,
        )


class _Bar:
    """rich's bar: done/total, sent, failed, rate and time left."""

    def __init__(self, total: int, stream: TextIO, label: str) -> None:
        from rich import console, progress  # noqa: PLC0415 - the cli extra, for a bar only

        self._tally = _Tally(total, time.monotonic)
        self._bar = progress.Progress(
            progress.TextColumn(label),
            progress.BarColumn(),
            progress.MofNCompleteColumn(),
            progress.TextColumn(
                "sent {task.fields[sent]}  failed {task.fields[failed]}  {task.fields[rate]}"
            ),
            progress.TimeRemainingColumn(),
            console=console.Console(file=stream),
        )
        self._task = self._bar.add_task("send", total=total, sent=0, failed=0, rate="")
        self._bar.start()

    def advance(self, sent: bool) -> None:
        t = self._tally
        t.count(sent)
        rate = f"{t.rate():.1f}/s"
        self._bar.update(self._task, advance=1, sent=t.sent, failed=t.failed, rate=rate)

    def close(self) -> None:
        self._bar.stop()
