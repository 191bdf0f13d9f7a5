"""Server-side micro-batching: images from concurrent requests share one model call.

Each served (model, precision) has one ``MicroBatcher``:

* **admission** (``admission(n, deadline)``): the room is the bounded queue (``max_queue``
  images decoding, waiting or in the model), taken for a request's n images once its body has
  been read and before any decoding. Without room the request waits in line, first come first
  served (holding only its body, which the server's upload budget bounds); past its deadline it
  gets ``OverloadedError`` (503 + Retry-After). So more clients than the queue holds cost
  latency, not errors: at twice the queue, answers take about twice as long. Uploading is not
  in the queue, so clients on slow links do not hold room while they send. An idle batcher
  always admits one request, however large.
* **gathering**: one worker task takes the first waiting image, then collects more until it has
  ``max_batch`` or ``max_wait_ms`` has passed. Under load the queue fills while the model runs,
  so batches form without waiting at all. It only waits for images that are on their way
  (admitted and still being decoded): a lone request runs at once instead of idling for
  max_wait (3 ms of a ~20 ms request at concurrency 1; docs/benchmarks.md).
* **running**: the model call runs on a dedicated thread (ONNX Runtime releases the GIL), so
  the event loop keeps accepting uploads and the decode threads keep preparing the next images.
  A call is **solo** when its images are all the server has admitted (nothing else decoding,
  waiting or running, in any batcher): then it may use every core (``--solo-threads``), which
  cuts a lone request's latency; under load calls use one thread each and overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from imgcls.errors import OverloadedError
from imgcls.server.waitline import WaitLine

__all__ = ["MicroBatcher", "BatchResult"]


@dataclass
class BatchResult:
    probabilities: np.ndarray  # this image's row
    queue_ms: float  # submit -> its model call started
    model_ms: float  # duration of the model call it was part of
    batch_size: int


class _Admission:
    """One request's admitted images that have not been submitted yet (see ``MicroBatcher.admit``)."""

    __slots__ = ("batcher", "unsubmitted")

    def __init__(self, batcher: "MicroBatcher", n: int):
        self.batcher, self.unsubmitted = batcher, n


# The admission of the request being handled; its per-image tasks inherit it (asyncio copies the
# context into tasks), so ``submit`` can tell an image that was announced from one that was not.
_ADMISSION: contextvars.ContextVar[_Admission | None] = contextvars.ContextVar("imgcls_admission", default=None)


@dataclass
class _Item:
    array: np.ndarray
    future: asyncio.Future
    enqueued: float


class MicroBatcher:
    """Gather single images into batches for ``run_batch`` (float32 NCHW -> probabilities).

    Args:
        name: for thread names and metric labels.
        run_batch: the blocking model call ``(batch, solo) -> probabilities``; runs on this
            batcher's own thread. ``solo`` is True when the batch is all the work there is.
        max_batch: images per call.
        max_wait_ms: how long the first image of a batch waits for others.
        max_queue: images admitted at once (see module docstring).
        observe: optional callback(event, value) for metrics: "batch_size", "model_s",
            "queue_s", "depth", "solo" (1 per solo call), "waiting" (requests in line for room).
        server_depth: images admitted across every batcher of the server (default: this one's);
            a call is solo only when its batch is all of them.
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[np.ndarray, bool], np.ndarray],
        *,
        max_batch: int = 8,
        max_wait_ms: float = 3.0,
        max_queue: int = 32,
        workers: int = 1,
        observe: Callable[[str, float], None] | None = None,
        server_depth: Callable[[], int] | None = None,
    ):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0 or workers < 1:
            raise ValueError("max_batch, max_queue and workers must be >= 1 and max_wait_ms >= 0")
        self.name = name
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._run_batch = run_batch
        self._observe = observe or (lambda event, value: None)
        self._server_depth = server_depth or (lambda: self._admitted)
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"imgcls-model-{name}")
        self._queue: asyncio.Queue[_Item] | None = None
        self._tasks: list[asyncio.Task] = []
        self._admitted = 0
        self._coming = 0  # admitted images not yet submitted (still being read or decoded)
        self._reserved = 0  # room given to requests in line that have not entered ``admit`` yet
        self._line = WaitLine(self.has_room, self._hold, self._release_reserved,
                              lambda length: self._observe("waiting", length))
        self.calls = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers on the running event loop."""
        if not self._tasks:
            self._queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._work(), name=f"batcher-{self.name}-{i}") for i in range(self.workers)]

    async def close(self) -> None:
        """Stop the workers; images still waiting and requests still in line fail with
        OverloadedError (the server is stopping)."""
        self._line.close(OverloadedError("The server is shutting down; try again shortly."))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        while self._queue is not None and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(OverloadedError("The server is shutting down."))
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- admission ----------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Images admitted and not yet finished."""
        return self._admitted

    @property
    def waiting(self) -> int:
        """Requests in line for room."""
        return len(self._line)

    def has_room(self, n: int = 1) -> bool:
        held = self._admitted + self._reserved
        return held == 0 or held + n <= self.max_queue

    @contextlib.asynccontextmanager
    async def admission(self, n: int, deadline: float):
        """Admit ``n`` images for the block, waiting in line for room until ``deadline``
        (event-loop time; one already past admits only if there is room now).

        Raises:
            OverloadedError: no room before the deadline, or the server is shutting down.
        """
        await self._line.acquire(n, deadline)
        with self.admit(n, reserved=n):
            yield

    @contextlib.contextmanager
    def admit(self, n: int, *, reserved: int = 0):
        """Admit ``n`` images for the duration of the block: they may be submitted.

        ``reserved``: room already given to them in line (``admission``); without it the room
        is checked now.

        Raises:
            OverloadedError: no reservation and the queue has no room for them.
        """
        if not reserved and not self.has_room(n):
            raise OverloadedError("The server is busy; try again shortly.")
        self._reserved -= reserved
        self._admitted += n
        self._coming += n
        admission = _Admission(self, n)
        token = _ADMISSION.set(admission)
        self._observe("depth", self._admitted)
        try:
            yield
        finally:
            _ADMISSION.reset(token)
            self._coming -= admission.unsubmitted  # images that failed before reaching the model
            self._admitted -= n
            self._observe("depth", self._admitted)
            self._line.serve()

    def _hold(self, n: int) -> None:
        self._reserved += n

    def _release_reserved(self, n: int) -> None:
        self._reserved -= n
        self._line.serve()

    # -- batching -----------------------------------------------------------------------------
    async def submit(self, array: np.ndarray) -> BatchResult:
        """Queue one preprocessed image (CHW float32) and wait for its probabilities."""
        if not self._tasks or self._queue is None:
            raise OverloadedError("The model is not running.")
        admission = _ADMISSION.get()
        if admission is not None and admission.batcher is self and admission.unsubmitted > 0:
            admission.unsubmitted -= 1
            self._coming -= 1
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(array, future, time.perf_counter()))
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                if self._admitted and self._coming <= 0:
                    break  # nothing else is on its way: waiting would only add latency
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        batch.append(await self._queue.get())
                except TimeoutError:
                    break
            live = [item for item in batch if not item.future.done()]
            if live:
                await self._run(loop, live)

    async def _run(self, loop: asyncio.AbstractEventLoop, live: list[_Item]) -> None:
        solo = self._server_depth() == len(live)
        started = time.perf_counter()
        try:
            probabilities = await loop.run_in_executor(self._executor, self._call, [item.array for item in live], solo)
        except Exception as exc:  # the model failed: every image of this batch gets the error
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        model_s = time.perf_counter() - started
        self.calls += 1
        self._observe("batch_size", len(live))
        if solo:
            self._observe("solo", 1)
        self._observe("model_s", model_s)
        for item, row in zip(live, probabilities):
            self._observe("queue_s", started - item.enqueued)
            if not item.future.done():
                item.future.set_result(BatchResult(row, round((started - item.enqueued) * 1000, 2),
                                                   round(model_s * 1000, 2), len(live)))

    def _call(self, arrays: list[np.ndarray], solo: bool) -> np.ndarray:
        return self._run_batch(np.stack(arrays), solo)
