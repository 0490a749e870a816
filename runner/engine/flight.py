"""An item's time in the row worker: waiting, or on the wire, and so whether a drain may drop it.

A drain drops only what is waiting (for a token, a permit, a 429's pause, a backoff): nothing
of it is on the wire, and its journaled state stands for the resume to judge.
"""

from __future__ import annotations

import asyncio

from runner.journal.base import ItemRef


class Dropped(Exception):
    """A drain dropped this item while nothing of it was on the wire."""


class Flight:
    """One item being worked on: journaled ``started`` at its first send; on the wire or not.

    A drain drops items that are only waiting (for a token, a permit, a pause, a backoff):
    nothing of theirs is on the wire. An item is ``sending`` from the moment a request of it
    is about to leave until the executor waits to try again (``on_wait``) or its outcome is
    journaled, and is not dropped meanwhile; a drain that came while it was sending drops it
    as soon as it waits.
    """

    def __init__(self, ref: ItemRef, window: asyncio.Timeout,
                 previous_done: asyncio.Future[object] | None) -> None:
        self.ref = ref
        self.window = window  # expired at once to cancel the item's wait
        self.previous_done = previous_done  # the row's last ``done``, to check before sending
        self.started = False
        self.sending = False
        self.dropped = False

    def drop(self) -> None:
        self.dropped = True
        self.window.reschedule(asyncio.get_running_loop().time())
