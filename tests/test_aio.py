"""The asyncio idioms of runner.aio: work that runs to its end under a cancel, and one error
out of a task group."""

from __future__ import annotations

import asyncio

import pytest

from runner.aio import in_thread, single_error, to_the_end
from runner.errors import JournalError
from tests.fakes import all_tasks_blocked


async def test_to_the_end_finishes_the_work_before_the_cancel_goes_on() -> None:
    """A caller cancelled while its work runs waits for the work to end, then is cancelled."""
    release, finished = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        await release.wait()
        finished.set()

    caller = asyncio.create_task(to_the_end(work()))
    await all_tasks_blocked()
    caller.cancel()
    await all_tasks_blocked()
    assert not caller.done()
    caller.cancel()  # a second cancel does not cut it short either
    await all_tasks_blocked()
    assert not caller.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert finished.is_set()


async def test_to_the_end_keeps_a_timeout_a_timeout() -> None:
    """Under asyncio.timeout the work still ends first, and the caller then sees TimeoutError."""
    finished = asyncio.Event()

    async def work() -> None:
        await asyncio.sleep(0.05)
        finished.set()

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await to_the_end(work())
    assert finished.is_set()


async def test_in_thread_returns_what_the_function_returns() -> None:
    """in_thread runs the function with its arguments and hands back its result."""
    assert await in_thread(int, "ff", base=16) == 255


def test_single_error_is_the_first_leaf_that_is_not_a_cancel() -> None:
    """A group's cancellations are passed over, nested groups searched: the real error wins."""
    error = JournalError("disk full")
    group = BaseExceptionGroup("g", [asyncio.CancelledError(),
                                     ExceptionGroup("inner", [error, ValueError("later")])])
    assert single_error(group) is error
    cancelled = asyncio.CancelledError()
    assert single_error(BaseExceptionGroup("g", [cancelled])) is cancelled
