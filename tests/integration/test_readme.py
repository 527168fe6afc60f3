"""The README's examples run as written: sending against the emulator, the FakeTwilio test."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

from ratatosk.emulator.app import start_emulator

README = Path(__file__).resolve().parents[2] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1)


async def test_sending_example_runs_against_the_emulator(tmp_path: Path) -> None:
    script = tmp_path / "send.py"
    script.write_text(_block_after("## Sending"), encoding="utf-8")
    emulator = await start_emulator()
    try:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
        environ |= {
            "TWILIO_ACCOUNT_SID": emulator.account_sid,
            "TWILIO_AUTH_TOKEN": emulator.auth_token,
            "TWILIO_API_BASE_URL": emulator.url,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            env=environ,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        await emulator.close()
    assert process.returncode == 0, err.decode()
    sid, status = out.decode().split()
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert status == "Queued"
    assert emulator.model.stored_count == 1


async def test_fake_twilio_example_passes_as_a_test() -> None:
    namespace: dict[str, Any] = {}
    exec(  # noqa: S102 - our own README
        compile(_block_after("## Testing your code with FakeTwilio"), "README", "exec"), namespace
    )
    await namespace["test_order_confirmation_is_sent"]()
