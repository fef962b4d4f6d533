"""The one subprocess helper: argv only, timeout kills the group, output capped."""

from __future__ import annotations

import asyncio

import pytest

from core.process import run_process


@pytest.mark.asyncio
async def test_runs_argv_without_a_shell() -> None:
    result = await run_process(["echo", "$HOME", ";", "ls"])
    assert result.ok and result.stdout.strip() == "$HOME ; ls"


@pytest.mark.asyncio
async def test_timeout_kills_the_whole_process_group(tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "child-survived"
    # the child sleeps then writes a file; if the group is killed, the file never appears
    script = (
        f"import subprocess,sys; subprocess.Popen(['sh','-c','sleep 1.5; touch {marker}']); import time; time.sleep(30)"
    )
    result = await run_process(["python3", "-c", script], timeout=0.5)
    assert result.timed_out and not result.ok
    await asyncio.sleep(2)
    assert not marker.exists()


@pytest.mark.asyncio
async def test_output_is_capped_and_the_pipe_drained() -> None:
    result = await run_process(["python3", "-c", "print('x' * 1_000_000)"], output_cap=1000)
    assert result.ok and result.truncated and len(result.stdout) == 1000


@pytest.mark.asyncio
async def test_missing_program_is_a_result_not_an_exception() -> None:
    result = await run_process(["definitely-not-a-program-xyz"])
    assert result.not_found and not result.ok and "not found" in result.stderr


@pytest.mark.asyncio
async def test_subprocesses_do_not_block_the_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(run_process(["sleep", "0.5"]) for _ in range(10)))
    task.cancel()
    assert ticks > 10  # the loop kept turning while ten processes ran


@pytest.mark.asyncio
async def test_a_timeout_returns_even_when_a_descendant_keeps_the_pipes_open() -> None:
    # `setsid` moves the sleeper out of the process group the timeout kills; it still holds stdout.
    result = await asyncio.wait_for(run_process(["sh", "-c", "setsid sleep 60 & sleep 60"], timeout=0.5), timeout=30)
    assert result.timed_out
