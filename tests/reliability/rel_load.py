"""Load drivers for the overload, soak and shutdown tests: closed-loop asyncio + httpx clients,
a deterministic mix of good and bad requests, and the leak detector the soak relies on."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx

import rel_images as img
from rel_server import CLASSIFY, Snapshot

MB_KB = 1024


# -- closed-loop load at a fixed concurrency ------------------------------------------------------
@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # of 200 answers only
    retry_after: list[str | None] = field(default_factory=list)  # of 503 answers
    busy_codes: set[str] = field(default_factory=set)

    def p(self, q: float) -> float:
        values = sorted(self.latencies_ms)
        return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else float("nan")

    @property
    def ok_per_s(self) -> float:
        return round(self.statuses.get(200, 0) / self.seconds, 2)

    def summary(self) -> dict:
        return {"concurrency": self.concurrency, "seconds": self.seconds, "statuses": dict(self.statuses),
                "ok_per_s": self.ok_per_s, "p50_ms": self.p(0.5), "p95_ms": self.p(0.95),
                "mean_ms": round(statistics.fmean(self.latencies_ms), 1) if self.latencies_ms else None}


async def closed_loop(url: str, payloads: list[bytes], concurrency: int, seconds: float,
                      backoff_s: float = 0.05) -> LoadResult:
    """``concurrency`` clients post one photo each, back to back, for ``seconds``. A client that
    gets 503 waits ``backoff_s`` and tries again (keeps the offered load up, unlike Retry-After)."""
    result = LoadResult(concurrency, seconds)
    counter = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        until = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < until:
                data = payloads[next(counter) % len(payloads)]
                started = time.perf_counter()
                response = await client.post(CLASSIFY, files={"file": ("p.jpg", data, "image/jpeg")})
                result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    result.latencies_ms.append((time.perf_counter() - started) * 1000)
                elif response.status_code == 503:
                    result.retry_after.append(response.headers.get("retry-after"))
                    result.busy_codes.add(response.json()["error"]["code"])
                    await asyncio.sleep(backoff_s)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


# -- the soak's request mix -----------------------------------------------------------------------
@dataclass
class Kind:
    name: str
    expected: int
    send: Callable  # async (client, port) -> httpx.Response
    good: bool = False


def request_mix(photos: list[bytes]) -> list[Kind]:
    """One cycle of the soak: about a quarter good images (several formats, both precisions),
    the rest bad input of every family, plus the read-only endpoints."""
    picture = img.upright(photos[0], 320)
    rgba, cmyk = img.rgba_png(picture), img.cmyk_adobe_jpeg(picture)
    heic, avif, jp2 = img.heic_photo(picture), img.avif_photo(picture), img.jpeg2000_photo(picture)
    truncated, bomb = photos[1][: len(photos[1]) // 2], img.png_declaring(100_000, 100_000)
    malformed, multipart_type = b"--x\r\nnot really multipart", "multipart/form-data; boundary=zzz"

    def post(data: bytes, name: str = "p.jpg", mime: str = "image/jpeg", **params):
        return lambda c, port: c.post(CLASSIFY, params=params, files={"file": (name, data, mime)})

    kinds = [Kind(f"good photo {i}", 200, post(p), True) for i, p in enumerate(photos[:4])]
    kinds += [
        Kind("good photo int8", 200, post(photos[4], precision="int8"), True),
        Kind("good RGBA PNG", 200, post(rgba, "a.png", "image/png"), True),
        Kind("good CMYK JPEG", 200, post(cmyk), True),
        Kind("good HEIC", 200, post(heic, "a.heic", "image/heic"), True),
        Kind("good AVIF", 200, post(avif, "a.avif", "image/avif"), True),
        Kind("good JPEG 2000", 200, post(jp2, "a.jp2", "image/jp2"), True),
        Kind("text", 415, post(img.text_file())),
        Kind("truncated JPEG", 400, post(truncated)),
        Kind("empty file", 400, post(b"")),
        Kind("PNG bomb header", 413, post(bomb, "b.png", "image/png")),
        Kind("ZIP", 415, post(img.zip_file())),
        Kind("malformed multipart", 400, lambda c, port: c.post(CLASSIFY, content=malformed,
                                                                headers={"content-type": multipart_type})),
        Kind("wrong field", 422, lambda c, port: c.post(CLASSIFY, files={"image": ("a.jpg", photos[0])})),
        Kind("raw body", 200, lambda c, port: c.post(CLASSIFY, content=photos[0], headers={"content-type": "image/jpeg"}),
             True),
        Kind("JSON body", 415, lambda c, port: c.post(CLASSIFY, json={"image": "aGVsbG8="})),
        Kind("GET classify", 405, lambda c, port: c.get(CLASSIFY)),
        Kind("unknown model", 404, post(photos[0], model="nope")),
        Kind("bad top_k", 422, post(photos[0], top_k=0)),
        Kind("foreign Host", 421, lambda c, port: c.get("/api/v1/models", headers={"host": "evil.example"})),
        Kind("cross-site", 403, lambda c, port: c.post(CLASSIFY, files={"file": ("a.jpg", b"x")},
                                                      headers={"origin": "http://evil.example"})),
        Kind("not found", 404, lambda c, port: c.get("/api/v1/nothing")),
        Kind("models", 200, lambda c, port: c.get("/api/v1/models")),
        Kind("labels zh", 200, lambda c, port: c.get("/api/v1/labels", params={"lang": "zh"})),
        Kind("healthz", 200, lambda c, port: c.get("/healthz")),
        Kind("metrics", 200, lambda c, port: c.get("/metrics")),
    ]
    return kinds


async def run_mix(url: str, port: int, kinds: list[Kind], total: int, concurrency: int = 4,
                  on_progress: Callable[[int], None] | None = None, new_connection_every: int = 50) -> dict:
    """Send ``total`` requests cycling through ``kinds``; returns counts and any unexpected answers.
    Every ``new_connection_every`` requests a client reconnects, so connection set-up and teardown
    are soaked too."""
    counter = itertools.count()
    unexpected: list[tuple[str, int]] = []
    good = 0

    async def worker() -> None:
        nonlocal good
        client = httpx.AsyncClient(base_url=url, timeout=120)
        try:
            while (i := next(counter)) < total:
                kind = kinds[i % len(kinds)]
                response = await kind.send(client, port)
                if response.status_code != kind.expected:
                    unexpected.append((kind.name, response.status_code))
                good += kind.good and response.status_code == 200
                if on_progress and i % PROGRESS_EVERY == 0:
                    on_progress(i)
                if i % new_connection_every == 0:
                    await client.aclose()
                    client = httpx.AsyncClient(base_url=url, timeout=120)
        finally:
            await client.aclose()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"requests": total, "good_classified": good, "unexpected": unexpected,
            "seconds": round(time.perf_counter() - started, 1)}


# -- the leak detector ----------------------------------------------------------------------------
# Memory is judged two ways. A cap on total growth bounds it. The allocators grow in steps while a
# server meets new mixes of batch sizes and threads (ONNX Runtime arenas, one glibc arena per
# thread): steps of 8-20 MB were seen after thousands of requests, then flat again. A leak is
# growth that keeps going, so the second check is the median growth per interval of
# PROGRESS_EVERY requests over the second half of the run: a step moves one interval, a leak of
# ~0.5 KB per request or more moves the median.
RSS_GROWTH_LIMIT_MB = 48
PROGRESS_EVERY = 100
STEADY_GROWTH_LIMIT_KB = 48  # per PROGRESS_EVERY requests


def leak_findings(before: Snapshot, after: Snapshot, rss_trend_kb: list[tuple[int, int]] = (),
                  rss_limit_mb: float = RSS_GROWTH_LIMIT_MB) -> list[str]:
    """What grew between two snapshots beyond the soak's limits (empty = no leak).

    ``rss_trend_kb``: (requests sent, RSS in KB) taken every PROGRESS_EVERY requests during the run.
    """
    findings = []
    peak_growth = (after.hwm_kb - before.hwm_kb) / MB_KB
    rss_growth = (after.rss_kb - before.rss_kb) / MB_KB
    if peak_growth > rss_limit_mb:
        findings.append(f"peak RSS grew {peak_growth:.1f} MB (limit {rss_limit_mb} MB)")
    if rss_growth > rss_limit_mb:
        findings.append(f"RSS grew {rss_growth:.1f} MB (limit {rss_limit_mb} MB)")
    trend = sorted(rss_trend_kb)
    second_half = [kb for i, kb in trend if i >= trend[-1][0] / 2] if trend else []
    steps = sorted(b - a for a, b in zip(second_half, second_half[1:]))
    if steps and steps[len(steps) // 2] > STEADY_GROWTH_LIMIT_KB:
        findings.append(f"RSS kept growing: median {steps[len(steps) // 2]} KB per {PROGRESS_EVERY} requests "
                        f"over the second half (limit {STEADY_GROWTH_LIMIT_KB} KB)")
    if after.fds > before.fds:
        findings.append(f"open file descriptors grew {before.fds} -> {after.fds}")
    if after.tmp_files > before.tmp_files:
        findings.append(f"temp files grew {before.tmp_files} -> {after.tmp_files}")
    return findings
