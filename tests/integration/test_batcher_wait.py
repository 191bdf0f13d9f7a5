"""The micro-batcher waits only for images that are on their way (admitted, still decoding).

Before: a lone request idled for max_wait before its model call (3 ms of a ~20 ms request at
concurrency 1 by default). Now it runs at once, while announced images are still waited for.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from imgcls.server.batcher import MicroBatcher

WAIT_MS = 400  # long, so that "did it wait?" is unambiguous even on a busy machine


def _recorder(solos: list[bool] | None = None):
    sizes: list[int] = []

    def model(batch: np.ndarray, solo: bool) -> np.ndarray:
        sizes.append(len(batch))
        if solos is not None:
            solos.append(solo)
        return batch.reshape(len(batch), -1)

    return sizes, model


async def _request(batcher: MicroBatcher, n: int, delays_s: list[float], submit: list[bool] | None = None):
    """One request of n images: admitted together, each submitted after its 'decode' delay."""
    submit = submit or [True] * n

    async def one(i: int):
        await asyncio.sleep(delays_s[i])
        if submit[i]:
            return await batcher.submit(np.full((2,), i, np.float32))
        return None  # this image failed to decode: it never reaches the batcher

    with batcher.admit(n):
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_a_lone_image_does_not_wait():
    async def scenario():
        sizes, model = _recorder()
        batcher = MicroBatcher("t", model, max_batch=8, max_wait_ms=WAIT_MS, max_queue=16)
        batcher.start()
        started = time.perf_counter()
        await _request(batcher, 1, [0.0])
        elapsed = time.perf_counter() - started
        await batcher.close()
        return sizes, elapsed

    sizes, elapsed = asyncio.run(scenario())
    assert sizes == [1]
    assert elapsed < WAIT_MS / 1000 / 2, f"a lone image waited {elapsed * 1000:.0f} ms"


def test_announced_images_are_waited_for_and_batched():
    async def scenario():
        sizes, model = _recorder()
        batcher = MicroBatcher("t", model, max_batch=8, max_wait_ms=WAIT_MS, max_queue=16)
        batcher.start()
        started = time.perf_counter()
        results = await _request(batcher, 3, [0.0, 0.05, 0.1])  # decodes finishing 50 ms apart
        elapsed = time.perf_counter() - started
        await batcher.close()
        return sizes, results, elapsed

    sizes, results, elapsed = asyncio.run(scenario())
    assert sizes == [3], "the first image should have waited for the two being decoded"
    assert [r.batch_size for r in results] == [3, 3, 3]
    assert elapsed < WAIT_MS / 1000, "the batch ran when the last image arrived, not at the deadline"


def test_an_image_that_never_arrives_costs_at_most_max_wait():
    async def scenario():
        sizes, model = _recorder()
        batcher = MicroBatcher("t", model, max_batch=8, max_wait_ms=WAIT_MS, max_queue=16)
        batcher.start()
        results = await _request(batcher, 2, [0.0, 0.0], submit=[True, False])
        await batcher.close()
        return sizes, results, batcher.depth

    sizes, results, depth = asyncio.run(scenario())
    assert sizes == [1] and results[0].batch_size == 1 and results[1] is None
    assert depth == 0


def test_a_call_is_solo_only_when_its_images_are_all_the_work_in_the_server():
    """Solo calls may use every core (--solo-threads); one that overlaps other work must not."""
    other_depth = {"n": 0}  # images admitted by another served model

    async def scenario():
        solos: list[bool] = []
        sizes, model = _recorder(solos)
        batcher = MicroBatcher("t", model, max_batch=1, max_wait_ms=0, max_queue=16,
                               server_depth=lambda: batcher.depth + other_depth["n"])
        batcher.start()
        await _request(batcher, 1, [0.0])  # a lone request: solo
        await asyncio.gather(_request(batcher, 1, [0.0]), _request(batcher, 1, [0.0]))  # two at once: neither
        other_depth["n"] = 1
        await _request(batcher, 1, [0.0])  # alone here, but another model is busy: not solo
        await batcher.close()
        return solos

    solos = asyncio.run(scenario())
    assert len(solos) == 4
    # the second of the two concurrent calls may start after the first request finished, so
    # only the first of them is certain to overlap other work
    assert solos[0] is True and solos[1] is False and solos[3] is False
