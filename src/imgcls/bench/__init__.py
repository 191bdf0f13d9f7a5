"""The benchmark suite behind ``imgcls bench`` (see docs/benchmarks.md).

* ``data``: dev photos, the benchmark's own model store, the models (embedded EfficientNet-Lite0
  and a generated-weights ResNet-18 bundle) and their verified fp32/INT8 artifacts.
* ``model_latency``: section 1, model-only latency per runtime/precision/batch/threads.
* ``loadgen``: the light closed-loop HTTP load generator (asyncio streams, prebuilt requests).
* ``servers``: `imgcls serve` and the seed baseline as subprocesses; RSS, CPU, cold start.
* ``http_bench``: sections 2-4 (HTTP, baseline, memory and cold start).
* ``breakdown``: section 5, per-image CPU time by stage and the distance to the core limit.
* ``suite`` / ``report``: the run itself, the tables, the JSON and the chart.

Nothing here is imported by the serving path.
"""
