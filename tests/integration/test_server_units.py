"""In-process checks of the server's building blocks: micro-batcher, upload reader, guards.

These run without a model or a socket (a fake model function and a fake ASGI receive), so the
edge cases the server tests can only reach by timing are pinned down exactly here.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from imgcls.errors import OverloadedError, UnsupportedMediaError
from imgcls.server.batcher import MicroBatcher
from imgcls.server.config import ServerConfig
from imgcls.server.security import split_host
from imgcls.server.uploads import ByteBudget, ClientGone, UploadError, UploadLimits, clean_filename, read_uploads

BOUNDARY = "b0und4ry"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def receiver(chunks: list[bytes], delay: float = 0.0, disconnect: bool = False, hang: bool = False):
    queue = list(chunks)

    async def receive():
        if delay:
            await asyncio.sleep(delay)
        if not queue:
            if disconnect:
                return {"type": "http.disconnect"}
            await asyncio.sleep(3600)
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue) or disconnect or hang}

    return receive


def read(chunks, limits=None, content_type=CTYPE, declared=None, **kwargs):
    limits = limits or UploadLimits(max_bytes=1 << 20, max_files=4, deadline_s=2.0)
    return asyncio.run(read_uploads(receiver(chunks, **kwargs), content_type, declared, limits))


def test_batcher_gathers_concurrent_images_into_one_call():
    calls = []

    def model(batch, solo):
        calls.append(len(batch))
        time.sleep(0.01)
        return batch.reshape(len(batch), -1)[:, :2] * 2

    async def main():
        batcher = MicroBatcher("t", model, max_batch=4, max_wait_ms=20, max_queue=16)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(np.full((1, 1, 2), i, np.float32)) for i in range(10)))
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert [r.probabilities.tolist() for r in results] == [[2 * i, 2 * i] for i in range(10)]  # order kept
    assert max(calls) == 4 and sum(calls) == 10 and len(calls) <= 4
    assert all(r.batch_size in calls for r in results)


def test_batcher_admission_is_bounded_and_the_model_error_reaches_every_waiter():
    def broken(batch, solo):
        raise RuntimeError("boom")

    async def main():
        batcher = MicroBatcher("t", broken, max_batch=2, max_wait_ms=0, max_queue=3)
        batcher.start()
        with batcher.admit(3):
            assert batcher.depth == 3 and not batcher.has_room(1)
            with pytest.raises(OverloadedError):
                with batcher.admit(1):
                    pass
            outcomes = await asyncio.gather(*(batcher.submit(np.zeros((1,), np.float32)) for _ in range(3)),
                                            return_exceptions=True)
        assert batcher.depth == 0
        with batcher.admit(50):  # an idle batcher takes any single request
            pass
        await batcher.close()
        return outcomes

    assert all(isinstance(o, RuntimeError) for o in asyncio.run(main()))


def test_admission_waits_in_line_in_order_and_a_big_request_is_not_overtaken():
    """Room for 2 images. Requests beyond it wait (no 503) and get room strictly in arrival order;
    a 3-image request (more than the queue holds) waits at the front until the queue is idle, and
    a request that waits past its deadline gets OverloadedError without disturbing the line."""

    async def main():
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher("t", lambda batch, solo: batch, max_queue=2)
        order: list[str] = []

        async def request(name: str, n: int, hold: asyncio.Event, timeout: float = 5.0):
            async with batcher.admission(n, loop.time() + timeout):
                order.append(name)
                await hold.wait()

        holds = {name: asyncio.Event() for name in "abcdef"}
        a = asyncio.create_task(request("a", 1, holds["a"]))
        b = asyncio.create_task(request("b", 1, holds["b"]))
        await asyncio.sleep(0.01)
        assert order == ["a", "b"] and not batcher.has_room(1) and batcher.depth == 2
        big = asyncio.create_task(request("big", 3, holds["c"]))
        await asyncio.sleep(0.01)
        d = asyncio.create_task(request("d", 1, holds["d"]))
        late = asyncio.create_task(request("late", 1, holds["e"], timeout=0.05))
        await asyncio.sleep(0.02)
        assert batcher.waiting == 3 and order == ["a", "b"]
        with pytest.raises(OverloadedError):
            await late  # its deadline passed while it waited
        assert batcher.waiting == 2
        holds["a"].set()
        await asyncio.sleep(0.01)
        assert order == ["a", "b"] and batcher.waiting == 2  # d must not overtake big
        holds["b"].set()
        await asyncio.sleep(0.01)
        assert order == ["a", "b", "big"] and batcher.depth == 3
        holds["c"].set()
        await asyncio.sleep(0.01)
        assert order == ["a", "b", "big", "d"]
        holds["d"].set()
        await asyncio.gather(a, b, big, d)
        assert batcher.depth == 0 and batcher.waiting == 0 and batcher.has_room(2)

    asyncio.run(main())


def test_admission_without_waiting_time_is_refused_at_once_and_closing_fails_the_line():
    async def main():
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher("t", lambda batch, solo: batch, max_queue=1)
        async with batcher.admission(1, loop.time()):  # room now: no wait needed
            with pytest.raises(OverloadedError):
                async with batcher.admission(1, loop.time()):  # --queue-timeout 0: 503 at once
                    pass
            waiting = asyncio.create_task(batcher.admission(1, loop.time() + 60).__aenter__())
            await asyncio.sleep(0.01)
            assert batcher.waiting == 1
            await batcher.close()
            with pytest.raises(OverloadedError, match="shutting down"):
                await waiting
        with pytest.raises(OverloadedError, match="shutting down"):
            async with batcher.admission(1, loop.time() + 60):
                pass

    asyncio.run(main())


def test_byte_budget_lets_declared_bodies_wait_for_their_share():
    async def main():
        budget = ByteBudget(100)
        with budget.lease() as first:
            await first.reserve(70, 1)
            first.take(70)  # the arriving bytes use the reservation
            assert budget.used == 70

            async def second_request():
                with budget.lease() as second:
                    await second.reserve(50, 5)
                    return budget.used

            second = asyncio.create_task(second_request())
            await asyncio.sleep(0.01)
            assert not second.done()  # 70 + 50 > 100: it waits instead of failing
            with pytest.raises(OverloadedError):
                with budget.lease() as third:
                    await third.reserve(10, 0.02)  # behind the second in line
        assert await second == 50  # the first gave back its 70
        assert budget.used == 0

    asyncio.run(main())


def test_upload_reader_keeps_order_and_skips_other_fields():
    data = body(("file", "a.jpg", b"AAA"), ("note", None, b"hello"), ("file", "b.png", b"B" * 5000))
    files = read([data[:7], data[7:100], data[100:]])
    assert [(f.filename, f.data) for f in files] == [("a.jpg", b"AAA"), ("b.png", b"B" * 5000)]


@pytest.mark.parametrize("content_type, error", [
    ("text/plain", UnsupportedMediaError), ("application/json", UnsupportedMediaError),
    ("application/x-www-form-urlencoded", UnsupportedMediaError), ("multipart/form-data", UploadError),
    ("multipart/form-data; boundary=" + "x" * 300, UploadError), ("multipart/form-data; a=" + '"' * 5000, UploadError),
])
def test_upload_reader_refuses_bad_content_types(content_type, error):
    started = time.perf_counter()
    with pytest.raises(error):
        read([b"x"], content_type=content_type)
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize("content_type", [None, "image/jpeg", "IMAGE/PNG; q=1", "application/octet-stream"])
def test_a_raw_body_is_one_file_with_its_bytes_as_they_came(content_type):
    (upload,) = read([b"\xff\xd8", b"\xff rest", b""], content_type=content_type)
    assert (upload.filename, upload.data) == ("file-1", b"\xff\xd8\xff rest")


def status_of(chunks, **kwargs) -> tuple[int, str, bool]:
    with pytest.raises(UploadError) as caught:
        read(chunks, **kwargs)
    return caught.value.http_status, caught.value.code, caught.value.close


def test_upload_reader_limits():
    limits = UploadLimits(max_bytes=10_000, max_files=2, deadline_s=1.0)
    assert status_of([body(("file", "a", b"x" * 20_000))], limits=limits)[:2] == (413, "payload_too_large")
    assert status_of([body(*[("file", str(i), b"x") for i in range(3)])], limits=limits)[:2] == (400, "too_many_files")
    assert status_of([body(*[("other", None, b"") for i in range(100)])], limits=limits)[:2] == (400, "too_many_parts")
    many_headers = f"--{BOUNDARY}\r\n".encode() + b"".join(b"X-H%d: v\r\n" % i for i in range(50))
    assert status_of([many_headers], limits=limits)[:2] == (400, "malformed_multipart")
    assert status_of([b"\r\n" * 40_000], limits=UploadLimits(max_bytes=1 << 20, max_files=2, deadline_s=1,
                                                             max_preamble=1000))[:2] == (400, "malformed_multipart")
    assert status_of([body(("file", "a", b"x"))[:-5]], limits=limits)[:2] == (400, "malformed_multipart")
    assert status_of([body(("image", "a", b"x"))], limits=limits)[:2] == (422, "missing_file")


def test_upload_reader_deadline_and_disconnect():
    started = time.perf_counter()
    status, code, close = status_of([b"-", b"-"], limits=UploadLimits(max_bytes=1000, max_files=1, deadline_s=0.3),
                                    hang=True)
    assert (status, code, close) == (408, "request_timeout", True)
    assert time.perf_counter() - started < 2
    with pytest.raises(ClientGone):
        read([body(("file", "a", b"x"))[:20]], disconnect=True)


def test_byte_budget_is_shared_and_given_back():
    budget = ByteBudget(100)
    with budget.lease() as first:
        first.take(60)
        with budget.lease() as second:
            with pytest.raises(UploadError) as caught:
                second.take(50)
            assert caught.value.http_status == 503
        assert budget.used == 60
    assert budget.used == 0


def test_filenames_and_hosts():
    assert clean_filename(None, 0) == "file-1"
    assert clean_filename("caf\u00e9\u202e.jpg".encode(), 0) == "caf\u00e9\ufffd.jpg"  # bidi override removed
    assert clean_filename(b"\xff\xfe.jpg", 0) == "\ufffd\ufffd.jpg"
    assert split_host("LOCALHOST:8000") == ("localhost", 8000)
    assert split_host("[::1]:80") == ("::1", 80)
    assert split_host("evil.example/path") is None and split_host("") is None and split_host("a:b:c") is None


def test_accepted_hostnames():
    assert ServerConfig().accepted_hostnames() == {"localhost", "127.0.0.1", "::1"}
    assert ServerConfig(host="0.0.0.0").accepted_hostnames() is None
    named = ServerConfig(host="0.0.0.0", allowed_hosts=["Imgcls.Internal"]).accepted_hostnames()
    assert "imgcls.internal" in named and "localhost" in named


def test_open_file_limit_is_raised_to_fit_the_connections():
    """With `ulimit -n 256` (soft) the server lifts its own soft limit to what --max-connections
    needs, within the hard limit; a hard limit too low for it is logged, not fatal."""
    import resource
    import subprocess
    import sys

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"the hard open-file limit here is {hard}")
    script = ("import resource; from imgcls.server.runner import ensure_open_file_limit as e; "
              "print(e(1280), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")

    def low_soft_limit(value):
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))

    raised = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            preexec_fn=low_soft_limit(256))
    assert raised.stdout.split() == ["1280", "1280"], raised
    already = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             preexec_fn=low_soft_limit(2000))
    assert already.stdout.split() == ["2000", "2000"], already  # never lowered
    capped = subprocess.run(
        [sys.executable, "-c", "import logging, resource; logging.basicConfig(); "
         "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 300)); "
         "from imgcls.server.runner import ensure_open_file_limit as e; print(e(1280))"],
        capture_output=True, text=True, check=True)
    assert capped.stdout.split() == ["300"] and "--max-connections needs about 1280" in capped.stderr, capped


def test_library_warnings_become_json_log_records():
    """Whatever a library warns about in the server reaches its log as a JSON record, not raw text."""
    import json
    import subprocess
    import sys

    code = ("import warnings; from imgcls.server.observability import configure_logging; configure_logging(); "
            "warnings.warn('something odd')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    (line,) = done.stderr.splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"] == "py.warnings" and "something odd" in record["msg"]
