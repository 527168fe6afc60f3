"""Which event loop the long-running commands run on (the ``speed`` extra's uvloop)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from ratatosk.cli import loop

UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_uvloop_is_used_exactly_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loop.LOOP_VARIABLE, raising=False)
    expected = "uvloop" if UVLOOP else "asyncio"
    assert loop.run(_loop_module()) == expected
    assert loop.loop_name() == expected


@pytest.mark.parametrize("value", ["asyncio", " AsyncIO "])
def test_the_standard_loop_can_be_asked_for(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(loop.LOOP_VARIABLE, value)
    assert loop.loop_factory() is None
    assert loop.run(_loop_module()) == "asyncio"
    assert loop.loop_name() == "asyncio"


def test_run_returns_the_result_and_closes_its_loop() -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    async def job() -> int:
        seen.append(asyncio.get_running_loop())
        return 42

    assert loop.run(job()) == 42
    assert seen[0].is_closed()


@pytest.mark.parametrize("value", ["bogus", "uv-loop", "trio"])
def test_an_unknown_loop_is_refused_naming_the_choices(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(loop.LOOP_VARIABLE, value)
    with pytest.raises(loop.LoopChoiceError, match="use asyncio or uvloop") as refused:
        loop.loop_factory()
    assert repr(value) in str(refused.value)
    with pytest.raises(loop.LoopChoiceError):
        loop.loop_name()


def test_a_refused_choice_closes_the_coroutine_unrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loop.LOOP_VARIABLE, "bogus")
    job = _loop_module()
    with pytest.raises(loop.LoopChoiceError):
        loop.run(job)
    assert job.cr_frame is None  # closed: no "never awaited" warning at collection


def test_uvloop_can_be_insisted_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loop.LOOP_VARIABLE, " UVLoop ")
    if UVLOOP:
        assert loop.run(_loop_module()) == "uvloop"
    else:
        with pytest.raises(loop.LoopChoiceError, match="uvloop is not installed"):
            loop.loop_factory()
