"""A first-come-first-served line for a shared amount (queue room, upload bytes).

The server bounds what it holds at once (bytes of bodies in memory, images in the queue). A
request that finds the bound reached waits here instead of being turned away: it is given its
amount strictly in order as others give theirs back, and after its deadline gets
``OverloadedError`` (503 + Retry-After). Strict order means a large request at the front waits
for its room rather than being overtaken by small ones forever. Each request waits for the
bytes first and the queue room second, never holding room while waiting for bytes, so the two
lines cannot wait on each other.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Callable

from imgcls.errors import OverloadedError

__all__ = ["WaitLine"]

BUSY = "The server is busy; try again shortly."


@dataclass(eq=False)
class _Waiter:
    n: int
    future: asyncio.Future  # done when the amount is taken for it


class WaitLine:
    """Waiters for an amount guarded by ``fits(n)``; ``take(n)`` claims it for a waiter.

    The owner calls ``acquire`` to claim (waiting if it must) and ``serve`` whenever some of the
    amount is given back.
    """

    def __init__(self, fits: Callable[[int], bool], take: Callable[[int], None], give_back: Callable[[int], None],
                 on_length: Callable[[int], None] | None = None):
        self._fits, self._take, self._give_back = fits, take, give_back
        self._on_length = on_length or (lambda length: None)
        self._line: collections.deque[_Waiter] = collections.deque()
        self._closed: OverloadedError | None = None

    def __len__(self) -> int:
        return len(self._line)

    async def acquire(self, n: int, deadline: float) -> None:
        """Claim ``n``, waiting in line until ``deadline`` (event-loop time) if it does not fit now.

        Raises:
            OverloadedError: the deadline passed first, or the line was closed.
        """
        if self._closed is not None:
            raise self._closed
        if not self._line and self._fits(n):
            self._take(n)
            return
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            raise OverloadedError(BUSY)
        waiter = _Waiter(n, loop.create_future())
        self._line.append(waiter)
        self._on_length(len(self._line))
        try:
            async with asyncio.timeout_at(deadline):
                await waiter.future
        except BaseException as exc:  # timed out, cancelled (client gone), or closed
            if waiter in self._line:
                self._line.remove(waiter)
                self._on_length(len(self._line))
            elif waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                self._give_back(n)  # its turn came at the same moment as the deadline
            if isinstance(exc, TimeoutError):
                raise OverloadedError(BUSY) from None
            raise

    def serve(self) -> None:
        """Give the front of the line what now fits, in order."""
        served = False
        while self._line and self._fits(self._line[0].n):
            waiter = self._line.popleft()
            served = True
            if not waiter.future.done():  # else its wait already ended
                self._take(waiter.n)
                waiter.future.set_result(None)
        if served:
            self._on_length(len(self._line))

    def close(self, error: OverloadedError) -> None:
        """Fail everyone in line, and later arrivals, with ``error``."""
        self._closed = error
        while self._line:
            waiter = self._line.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(error)
        self._on_length(0)
