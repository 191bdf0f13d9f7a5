"""A light closed-loop load generator for the HTTP server (asyncio + httpx).

Used by the integration tests (concurrent requests must be batched) and runnable by hand:

    python tests/integration/loadgen.py http://127.0.0.1:8000 --concurrency 8 --seconds 20 [--precision int8]

Each of ``concurrency`` workers posts one dev photo per request, back to back, for ``seconds``;
the figure printed is completed requests per second (status 200 only) and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx

DEV_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imagenet-samples" / "dev"


async def run_load(base_url: str, photos: list[tuple[str, bytes]], *, concurrency: int = 8, seconds: float = 10.0,
                   params: dict | None = None, warmup_s: float = 1.0, files_per_request: int = 1) -> dict:
    """Closed-loop load: returns {"rps", "ok", "errors", "statuses", "p50_ms", "p95_ms", "p99_ms"}."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    counter = {"next": 0}
    # Encode every request body once up front: the client shares the CPU with the server, so it
    # should spend as little of it as possible per request.
    bodies = [_multipart([photos[(i + j) % len(photos)] for j in range(files_per_request)])
              for i in range(0, len(photos), files_per_request)]
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) as client:
        async def one(record: bool) -> None:
            i = counter["next"]
            counter["next"] += 1
            content, content_type = bodies[i % len(bodies)]
            started = time.perf_counter()
            response = await client.post("/api/v1/classify", params=params or {}, content=content,
                                         headers={"content-type": content_type})
            if record:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - started) * 1000)

        async def worker(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                await one(record)

        if warmup_s > 0:
            until = time.perf_counter() + warmup_s
            await asyncio.gather(*(worker(until, False) for _ in range(concurrency)))
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(worker(until, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ok = statuses.get(200, 0)
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1) if latencies else 0.0

    return {"rps": round(ok * files_per_request / elapsed, 1), "ok": ok, "errors": sum(statuses.values()) - ok,
            "statuses": statuses, "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(latencies), 1) if latencies else 0.0}


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "imgclsloadgen7MA4YWxkTrZu0gW"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
             f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def load_photos(folder: Path = DEV_DIR, limit: int = 64) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.JPEG"))[:limit]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--precision", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--files-per-request", type=int, default=1)
    args = parser.parse_args()
    params = {k: v for k, v in (("precision", args.precision), ("model", args.model)) if v}
    result = asyncio.run(run_load(args.url, load_photos(), concurrency=args.concurrency, seconds=args.seconds,
                                  params=params, files_per_request=args.files_per_request))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
