"""Overload and soak against real server processes.

* Overload: a server admitting 4 images at once is driven at 1x and 2x that concurrency. By
  default the excess waits in line (--queue-timeout): every request must be answered 200, the
  server must keep its throughput (no error churn) and memory must stay bounded. With waiting
  off (--queue-timeout 0) the excess must get 503 + Retry-After and the requests that are
  accepted must keep the latency they have at capacity.
* Soak: 5,000 requests of mixed good and bad input. Peak RSS may grow at most 48 MB after
  warm-up (the allocators grow in steps for a while), and must not keep growing over the second
  half (median growth per 100 requests <= 48 KB, rel_load.leak_findings); open fds and temp
  files must not grow at all. A negative control runs the same soak, shorter, against a server
  that leaks on purpose (IMGCLS_TEST_LEAK_KB / _FILES, honoured only with
  IMGCLS_ENABLE_TEST_HOOKS=1) and checks that the detector fires.

Figures go to test-artifacts/overload.json and test-artifacts/soak.json.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from rel_load import RSS_GROWTH_LIMIT_MB, STEADY_GROWTH_LIMIT_KB, closed_loop, leak_findings, request_mix, run_mix

pytestmark = pytest.mark.timeout(900)
CAPACITY = 4  # --max-queue: images admitted at once


@pytest.fixture(scope="module")
def photo_bytes(dev_photos) -> list[bytes]:
    return [p.read_bytes() for p in dev_photos[:16]]


# -- overload -------------------------------------------------------------------------------------
@pytest.mark.slow  # ~1 minute: six 8-second load runs
def test_overload_at_twice_capacity_without_waiting_sheds_the_excess(start_rel_server, photo_bytes, artifacts_dir):
    server = start_rel_server(["--model", "efficientnet_lite0", "--max-queue", str(CAPACITY), "--max-batch", "4",
                               "--max-wait-ms", "5", "--queue-timeout", "0"])
    asyncio.run(closed_loop(server.url, photo_bytes, CAPACITY, 3))  # warm-up
    before = server.snapshot()
    runs = {"unloaded": [], "capacity": [], "overload": []}
    # Interleaved and repeated: other jobs share this CPU, so a slow spell must hit every level alike.
    for _ in range(2):
        for label, concurrency in (("unloaded", 1), ("capacity", CAPACITY), ("overload", 2 * CAPACITY)):
            runs[label].append(asyncio.run(closed_loop(server.url, photo_bytes, concurrency, 8)))
    after = server.snapshot()

    def p50(label: str) -> float:  # mean of the repeated runs' medians
        return round(sum(r.p(0.5) for r in runs[label]) / len(runs[label]), 1)

    overload = runs["overload"]
    statuses = {}
    for run in overload:
        for status, n in run.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    figures = {
        "capacity_images": CAPACITY,
        "p50_ms": {label: p50(label) for label in runs},
        "runs": {label: [r.summary() for r in rs] for label, rs in runs.items()},
        "overload_statuses": statuses,
        "peak_rss_growth_mb": round((after.hwm_kb - before.hwm_kb) / 1024, 1),
        "rss_mb": [before.rss_kb // 1024, after.rss_kb // 1024],
    }
    (artifacts_dir / "overload.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures["p50_ms"]), statuses, figures["peak_rss_growth_mb"])

    assert set(statuses) <= {200, 503}, statuses
    assert statuses.get(503, 0) > 0 and statuses.get(200, 0) > 0, statuses
    retry_after = [value for run in overload for value in run.retry_after]
    assert all(value is not None and int(value) >= 1 for value in retry_after), retry_after[:5]
    assert set().union(*(run.busy_codes for run in overload)) == {"overloaded"}
    for run in runs["unloaded"] + runs["capacity"]:  # at or below capacity nobody is turned away
        assert set(run.statuses) == {200}, run.statuses
    # Accepted requests keep their latency: what is admitted waits behind at most CAPACITY images,
    # whatever the offered load, so 2x the clients must not mean ~2x the latency.
    assert p50("overload") <= max(1.5 * p50("capacity"), p50("capacity") + 300), figures["p50_ms"]
    # ...and at most the queue's worth of work more than an unloaded request.
    assert p50("overload") <= (CAPACITY + 1) * p50("unloaded") + 300, figures["p50_ms"]
    assert figures["peak_rss_growth_mb"] < 150, figures


@pytest.mark.slow  # ~40 s: four 8-second load runs
def test_twice_capacity_waits_in_line_and_every_request_is_answered(start_rel_server, photo_bytes, artifacts_dir):
    server = start_rel_server(["--model", "efficientnet_lite0", "--max-queue", str(CAPACITY), "--max-batch", "4",
                               "--max-wait-ms", "5"])
    asyncio.run(closed_loop(server.url, photo_bytes, CAPACITY, 3))  # warm-up
    before = server.snapshot()
    runs = {"capacity": [], "twice": []}
    for _ in range(2):  # interleaved: a slow spell of the shared CPU hits both levels alike
        for label, concurrency in (("capacity", CAPACITY), ("twice", 2 * CAPACITY)):
            runs[label].append(asyncio.run(closed_loop(server.url, photo_bytes, concurrency, 8)))
    after = server.snapshot()

    def mean(label: str, figure) -> float:
        return round(sum(figure(r) for r in runs[label]) / len(runs[label]), 1)

    figures = {
        "capacity_images": CAPACITY,
        "p50_ms": {label: mean(label, lambda r: r.p(0.5)) for label in runs},
        "ok_per_s": {label: mean(label, lambda r: r.ok_per_s) for label in runs},
        "runs": {label: [r.summary() for r in rs] for label, rs in runs.items()},
        "peak_rss_growth_mb": round((after.hwm_kb - before.hwm_kb) / 1024, 1),
    }
    (artifacts_dir / "overload-waiting.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures["p50_ms"]), json.dumps(figures["ok_per_s"]), figures["peak_rss_growth_mb"])

    for run in runs["capacity"] + runs["twice"]:
        assert set(run.statuses) == {200}, run.statuses  # nobody is turned away
    # The line costs latency (twice the clients wait about twice as long), not throughput.
    assert figures["ok_per_s"]["twice"] >= 0.8 * figures["ok_per_s"]["capacity"], figures["ok_per_s"]
    assert figures["p50_ms"]["twice"] <= 3 * figures["p50_ms"]["capacity"] + 100, figures["p50_ms"]
    assert figures["peak_rss_growth_mb"] < 150, figures


# -- soak -----------------------------------------------------------------------------------------
def soak(server, photo_bytes, warmup: int, total: int, concurrency: int = 4) -> dict:
    """Warm up, snapshot, run ``total`` mixed requests, let connections close, snapshot again."""
    kinds = request_mix(photo_bytes)
    asyncio.run(run_mix(server.url, server.port, kinds, warmup, concurrency))
    before = server.take_baseline()
    trend = []
    outcome = asyncio.run(run_mix(server.url, server.port, kinds, total, concurrency,
                                  on_progress=lambda i: trend.append((i, server.snapshot().rss_kb))))
    time.sleep(1.0)
    after = server.take_baseline()
    return {**outcome, "before": before, "after": after, "findings": leak_findings(before, after, trend),
            "rss_trend_kb": sorted(trend), "kinds": len(kinds)}


def _figures(result: dict) -> dict:
    before, after = result["before"], result["after"]
    return {
        "requests": result["requests"], "good_classified": result["good_classified"], "seconds": result["seconds"],
        "unexpected": result["unexpected"][:20],
        "rss_mb": {"start": round(before.rss_kb / 1024, 1), "end": round(after.rss_kb / 1024, 1)},
        "peak_rss_mb": {"start": round(before.hwm_kb / 1024, 1), "end": round(after.hwm_kb / 1024, 1)},
        "fds": {"start": before.fds, "end": after.fds},
        "temp_files": {"start": before.tmp_files, "end": after.tmp_files},
        "rss_trend_mb": [(i, round(kb / 1024, 1)) for i, kb in result["rss_trend_kb"]],
        "findings": result["findings"],
        "limits": {"rss_growth_mb": RSS_GROWTH_LIMIT_MB, "steady_growth_kb_per_100_requests": STEADY_GROWTH_LIMIT_KB,
                   "fd_growth": 0, "temp_file_growth": 0},
    }


@pytest.mark.slow
def test_soak_5000_mixed_requests_leak_nothing(start_rel_server, photo_bytes, artifacts_dir):
    server = start_rel_server(["--model", "efficientnet_lite0", "--max-wait-ms", "2", "--body-timeout", "4"])
    result = soak(server, photo_bytes, warmup=1000, total=5000)
    figures = _figures(result)
    report = artifacts_dir / "soak.json"
    existing = json.loads(report.read_text()) if report.exists() else {}
    report.write_text(json.dumps({**existing, "soak": figures}, indent=2))
    print(json.dumps({k: figures[k] for k in ("seconds", "rss_mb", "peak_rss_mb", "fds", "temp_files")}))
    assert not result["unexpected"], result["unexpected"][:20]
    assert result["good_classified"] >= 1000
    assert not result["findings"], result["findings"]
    assert server.proc.poll() is None and server.assert_clean()


@pytest.mark.slow
def test_soak_detector_catches_a_deliberate_leak(start_rel_server, photo_bytes, artifacts_dir):
    """Negative control: the same soak, shorter, against a server that keeps 96 KB and one open
    temp file per request. The detector that passed the real server must fire on every count."""
    server = start_rel_server(["--model", "efficientnet_lite0", "--max-wait-ms", "2", "--body-timeout", "4"],
                              env={"IMGCLS_ENABLE_TEST_HOOKS": "1", "IMGCLS_TEST_LEAK_KB": "96",
                                   "IMGCLS_TEST_LEAK_FILES": "1"})
    result = soak(server, photo_bytes, warmup=50, total=800)
    figures = _figures(result)
    report = artifacts_dir / "soak.json"
    existing = json.loads(report.read_text()) if report.exists() else {}
    report.write_text(json.dumps({**existing, "negative_control": figures}, indent=2))
    findings = " | ".join(result["findings"])
    assert "peak RSS grew" in findings and "RSS grew" in findings and "RSS kept growing" in findings, findings
    assert "file descriptors grew" in findings and "temp files grew" in findings, findings
    assert result["after"].fds - result["before"].fds >= 800


def test_leak_hooks_need_the_enable_switch():
    from imgcls.server.testhooks import leak_hook_settings

    assert leak_hook_settings({"IMGCLS_TEST_LEAK_KB": "96", "IMGCLS_TEST_LEAK_FILES": "1"}) is None
    assert leak_hook_settings({"IMGCLS_ENABLE_TEST_HOOKS": "0", "IMGCLS_TEST_LEAK_KB": "64"}) is None
    assert leak_hook_settings({"IMGCLS_ENABLE_TEST_HOOKS": "1", "IMGCLS_TEST_LEAK_KB": "64"}) == (64, False)
    assert leak_hook_settings({"IMGCLS_ENABLE_TEST_HOOKS": "1"}) is None
