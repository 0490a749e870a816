"""Two asyncio idioms the runner needs in several places, written once.

``to_the_end``: asyncio can cancel a task but has no block that a cancel can't reach (anyio's
shielded cancel scope). Work that must finish once begun (journaling what came back, removing a
temporary file) runs in a task of its own that the caller waits for to the end, however often
the caller is cancelled meanwhile; the caller's cancel goes on afterwards.

``in_thread``: ``asyncio.to_thread`` abandons the thread when the caller is cancelled; file work
that must not overlap (write, then close, then remove) waits for its thread instead.

``single_error``: ``asyncio.TaskGroup`` wraps what its tasks raised in an ``ExceptionGroup``. A
user meets the first error of a run, as one line with its exit code, not a group's traceback;
the other tasks were cancelled because of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def to_the_end(work: Awaitable[T]) -> T:
    """Await ``work`` until it ends even if cancelled meanwhile, then re-raise the cancel."""
    task = asyncio.ensure_future(work)
    cancel: asyncio.CancelledError | None = None
    while not task.done():
        try:
            # ``wait`` leaves the task running when the waiter is cancelled (unlike ``await``).
            await asyncio.wait([task])
        except asyncio.CancelledError as exc:
            cancel = exc
    if cancel is not None:
        if not task.cancelled() and task.exception() is not None:
            raise cancel from task.exception()
        raise cancel
    return task.result()


async def in_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` in a worker thread; a cancel meanwhile waits for it to return."""
    return await to_the_end(asyncio.to_thread(func, *args, **kwargs))


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to raise for ``group``: its first leaf that is not a cancellation."""
    leaves = list(_leaves(group))
    for leaf in leaves:
        if not isinstance(leaf, asyncio.CancelledError):
            return leaf
    return leaves[0] if leaves else group


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out
