"""Presenting a results document: Rich tables, the issue's targets as pass/miss, the PNG chart."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from imgcls.bench.model_latency import ORT_SPINNING, prototype_limit

__all__ = ["print_report", "targets", "write_chart", "baseline_ratios"]


def _baseline_by_c(doc: dict) -> dict[int, float]:
    """Baseline req/s per concurrency: the mean of its passes (measured before and after imgcls)."""
    by_c: dict[int, list[float]] = {}
    for r in (doc.get("baseline") or {}).get("rows", []):
        by_c.setdefault(r["concurrency"], []).append(r["result"]["rps"])
    return {c: sum(v) / len(v) for c, v in by_c.items()}


def _runtime(row: dict) -> str:
    return row.get("runtime", "onnxruntime")  # results written before OpenVINO rows existed have none


def _ratio_key(row: dict) -> tuple[str, str, int, str]:
    return row["model"], row["precision"], row["concurrency"], _runtime(row)


def baseline_ratios(doc: dict) -> dict[tuple[str, str, int, str], float]:
    """(model, precision, concurrency, runtime) -> imgcls req/s divided by the baseline's at that concurrency."""
    base = _baseline_by_c(doc)
    return {_ratio_key(r): round(r["result"]["rps"] / base[r["concurrency"]], 2)
            for r in doc.get("http", []) if base.get(r["concurrency"])}


def _http(doc: dict, model: str, precision: str, c: int, runtime: str = "onnxruntime") -> dict | None:
    return next((r for r in doc.get("http", []) if _ratio_key(r) == (model, precision, c, runtime)), None)


def _openvino_label(doc: dict, model: str, precision: str) -> str | None:
    """The runtime label of the OpenVINO HTTP rows of this model/precision, if any ran."""
    return next((_runtime(r) for r in doc.get("http", []) if r["model"] == model and r["precision"] == precision
                 and _runtime(r).startswith("openvino")), None)


def _probe(row: dict) -> str:
    """The host speed probe taken before the row's window (absent in results from before it existed)."""
    return f"{row['host_probe_ms']:.2f}" if row.get("host_probe_ms") else ""


BREAKDOWN_NOTE = ("decode, preprocess and model: the server's own CPU per image over the HTTP window (its "
                  "imgcls_stage_cpu_seconds); * = not visible to the server (OpenVINO computes on its own threads), "
                  "taken from a separate in-process run instead. 'model, separate run': that in-process figure, "
                  "on an otherwise idle machine minutes later.")


def _stage(row: dict, stage: str) -> str:
    """A breakdown cell; starred when the figure comes from the separate in-process run."""
    value = f"{row[f'{stage}_ms']:.2f}"
    return value + ("*" if row.get("sources", {}).get(stage) == "in-process" else "")


def _separate_model(row: dict) -> str:
    in_process = row.get("in_process")
    return f"{in_process['model_ms']:.2f}" if in_process else "-"


def _shown_precision(row: dict) -> str:
    """The precision column: the runtime is named when it is not ONNX Runtime."""
    runtime = _runtime(row)
    return row["precision"] if runtime == "onnxruntime" or row.get("system") == "baseline" else \
        f"{row['precision']} on {runtime}"


def targets(doc: dict) -> list[dict]:
    """The issue's targets that this run measured: name, target, measured, ok (None = not measured)."""
    out: list[dict] = []

    def add(name: str, target: str, measured, ok, scored: bool = True) -> None:
        out.append({"target": name, "wanted": target, "measured": measured, "ok": ok, "scored": scored})

    latency = doc.get("model_latency", [])
    spun = {(r["model"], r["precision"]) for r in latency if r["runtime"] == ORT_SPINNING}
    for row in latency:
        limit = prototype_limit(row)
        if limit is None:
            continue
        # ONNX Runtime is scored with its defaults (idle threads spin), the setting the prototypes
        # were measured with; the serving setting (brief spinning) is shown beside it, not scored,
        # unless the run has no spinning rows (results from before they existed).
        if row["runtime"] == ORT_SPINNING:
            name, scored = "(ORT defaults, as the prototype)", True
        elif row["runtime"] == "onnxruntime":
            name, scored = "(serving setting)", (row["model"], row["precision"]) not in spun
        else:
            name, scored = f"on {row['runtime']}", True
        add(f"model-only {row['model']} {row['precision']} {name} b1 t2", f"<= {limit} ms",
            f"{row['median_ms']} ms", row["median_ms"] <= limit, scored)
    ratios = baseline_ratios(doc)
    lite = _http(doc, "lite0", "int8", 8)
    if lite:
        ratio = ratios.get(("lite0", "int8", 8, "onnxruntime"))
        add("HTTP lite0 INT8 c8 vs baseline", ">= 5.0x", f"{ratio}x" if ratio else "no baseline",
            ratio >= 5.0 if ratio else None)
        add("HTTP lite0 INT8 c8 p99", "<= 100 ms", f"{lite['result']['p99_ms']} ms", lite["result"]["p99_ms"] <= 100)
    lite1 = _http(doc, "lite0", "int8", 1)
    if lite1:
        add("HTTP lite0 INT8 c1 p50", "<= 12 ms", f"{lite1['result']['p50_ms']} ms", lite1["result"]["p50_ms"] <= 12)
    if doc.get("http"):
        errors = sum(r["result"]["errors"] for r in doc["http"])
        add("HTTP errors (all imgcls runs)", "0", str(errors), errors == 0)
    for precision, want in (("int8", 4.0), ("fp32", 1.6)):
        if _http(doc, "resnet18", precision, 8):
            ratio = ratios.get(("resnet18", precision, 8, "onnxruntime"))
            add(f"HTTP ResNet-18 {precision.upper()} c8 vs baseline", f">= {want}x",
                f"{ratio}x" if ratio else "no baseline", ratio >= want if ratio else None)
    # The alternative fp32 target: >= 2.2x if an OpenVINO runtime (bf16 where the CPU
    # runs it faster: its verification decides) is adopted and passes the artifact verification.
    # For INT8 the issue names no runtime, so the verified OpenVINO server's ratio is shown against
    # the same 4x, unscored: the scored row stays the ONNX Runtime one, comparable across runs.
    for precision, want, scored in (("fp32", 2.2, True), ("int8", 4.0, False)):
        openvino = _openvino_label(doc, "resnet18", precision)
        if openvino and _http(doc, "resnet18", precision, 8, openvino):
            ratio = ratios.get(("resnet18", precision, 8, openvino))
            add(f"HTTP ResNet-18 {precision.upper()} on {openvino} (verified) c8 vs baseline", f">= {want}x",
                f"{ratio}x" if ratio else "no baseline", ratio >= want if ratio else None, scored)
    memory = doc.get("memory")
    if memory:
        add(f"peak RSS, {memory['requests']} requests ({memory['model']} {memory['precision']})", "<= 250 MB",
            f"{memory['peak_rss_mb']} MB", memory["peak_rss_mb"] <= 250)
        add(f"cold start to /readyz (median of {len(memory['cold_start_s'])})", "<= 2 s",
            f"{memory['cold_start_median_s']} s", memory["cold_start_median_s"] <= 2.0)
        add("torch kept out of the server", "not loaded", "loaded" if memory["torch_loaded"] else "not loaded",
            not memory["torch_loaded"])
    return out


def _spin_label(row: dict) -> str:
    """A spinning lever row: older results say ``spinning`` on/off, newer ones ``spin_us``."""
    if "spin_us" not in row:
        return "on (default)" if row["spinning"] else "off"
    return {0: "off", None: "on (default)"}.get(row["spin_us"], f"{row['spin_us']} us")


def _verdict(target: dict) -> str:
    """'ok', 'miss', 'n/a' (not measured), or for rows shown beside a scored one 'info: met/not met'."""
    ok = target["ok"]
    if not target.get("scored", True):
        return "info: " + ("n/a" if ok is None else "met" if ok else "not met")
    return "ok" if ok else ("n/a" if ok is None else "miss")


def _mark(target: dict) -> str:
    verdict = _verdict(target)
    style = {"ok": "green", "miss": "bold red"}.get(verdict, "dim")
    return f"[{style}]{verdict.upper() if verdict == 'miss' else verdict}[/]"


def _plain_mark(target: dict) -> str:
    verdict = _verdict(target)
    return "**miss**" if verdict == "miss" else verdict


def print_report(doc: dict, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal and console.width < 160:
        console = Console(width=160)  # redirected output: wide tables beat wrapped columns
    m = doc["machine"]
    console.print(f"[bold]imgcls bench[/] on {m['cpu']} ({m['cores']} cores), onnxruntime {m['onnxruntime']}, "
                  f"load average at start {m['load_average_at_start'][0]}, at end "
                  f"{m.get('load_average_at_end', ['?'])[0]}; {doc['photos']['count']} dev JPEGs "
                  f"(mean {doc['photos']['mean_kb']} KB){'; QUICK run' if doc['settings']['quick'] else ''}")
    for key, info in doc.get("models", {}).items():
        console.print(f"  {key}: {info['title']}; INT8: {info['int8']}")
    if "model_latency" in doc:
        table = Table(title="1. Model-only latency (ms per image; CPU = process core-ms per image)")
        for col in ("model", "runtime", "precision", "batch", "threads", "median", "p90", "CPU", "calls", "target"):
            table.add_column(col, justify="right" if col not in ("model", "runtime", "precision") else "left")
        for r in doc["model_latency"]:
            limit = prototype_limit(r)
            target = "" if limit is None else f"<= {limit:.2f} " + ("[green]ok[/]" if r["median_ms"] <= limit else "[red]over[/]")
            table.add_row(r["model"], r["runtime"], r["precision"], str(r["batch"]), str(r["threads"]),
                          f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['cpu_ms']:.2f}", str(r["calls"]), target)
        console.print(table)
    if "http" in doc or "baseline" in doc:
        ratios = baseline_ratios(doc)
        table = Table(title="2-3. HTTP, one JPEG per request (closed loop); ratio = req/s / baseline req/s "
                            "(mean of the baseline's passes before and after imgcls); host probe = core-ms to decode "
                            "and resize one photo, timed before the window (higher = the host ran slower)")
        for col in ("system", "model", "precision", "conc.", "req/s", "p50 ms", "p99 ms", "errors", "ratio",
                    "batch", "server CPU ms/req", "client CPU ms/req", "peak RSS MB", "host probe"):
            table.add_column(col, justify="left" if col in ("system", "model", "precision") else "right")
        rows = doc.get("http", []) + (doc.get("baseline") or {}).get("rows", [])
        for r in rows:
            res = r["result"]
            ratio = ratios.get(_ratio_key(r)) if r["system"] == "imgcls" else None
            table.add_row(r["system"], r["model"], _shown_precision(r), str(r["concurrency"]), f"{res['rps']:.1f}",
                          f"{res['p50_ms']:.1f}", f"{res['p99_ms']:.1f}", str(res["errors"]),
                          f"{ratio:.2f}x" if ratio else "", f"{r['mean_batch']:.2f}" if r.get("mean_batch") else "",
                          f"{r['server_cpu_ms_per_request']:.2f}", f"{res['client_cpu_ms_per_request']:.3f}",
                          f"{r['server_peak_rss_mb']:.0f}", _probe(r))
        console.print(table)
    memory = doc.get("memory")
    if memory:
        console.print(f"4. Memory: {memory['model']} {memory['precision']}, {memory['requests']} requests at "
                      f"concurrency {memory['concurrency']} ({memory['errors']} errors): RSS ready "
                      f"{memory['rss_ready_mb']} MB, peak {memory['peak_rss_mb']} MB (kernel VmHWM "
                      f"{memory['peak_rss_kernel_mb']} MB), after {memory['rss_after_mb']} MB; torch in the server: "
                      f"{'yes' if memory['torch_loaded'] else 'no'}. Cold start to /readyz: "
                      f"{', '.join(f'{s:.2f}' for s in memory['cold_start_s'])} s (median "
                      f"{memory['cold_start_median_s']} s).")
        base = doc.get("baseline") or {}
        if base.get("peak_rss_mb_kernel"):
            console.print(f"   Baseline peak RSS (VmHWM over its whole run): {base['peak_rss_mb_kernel']} MB.")
    breakdown = doc.get("breakdown")
    if breakdown:
        table = Table(title=f"5. CPU per image (core-ms) at concurrency {breakdown['reference_concurrency']}; "
                            f"ceiling = {breakdown['cores']} cores / (server + client)")
        for col in ("model", "prec.", "decode", "preproc.", "model (batch)", "response", "other", "server",
                    "client", "ceiling req/s", "measured", "of ceiling", "model, separate run"):
            table.add_column(col, justify="left" if col in ("model", "prec.") else "right")
        for r in breakdown["rows"]:
            table.add_row(r["model"], _shown_precision(r), _stage(r, "decode"), _stage(r, "preprocess"),
                          f"{_stage(r, 'model')} ({r['model_batch']})", f"{r['response_ms']:.3f}",
                          f"{r.get('http_other_ms', 0):.2f}", f"{r.get('server_total_ms', 0):.2f}",
                          f"{r.get('client_ms', 0):.3f}", f"{r.get('ceiling_rps', 0):.0f}",
                          f"{r.get('measured_rps', 0):.1f}", f"{r.get('fraction_of_ceiling', 0):.0%}",
                          _separate_model(r))
        console.print(table)
        console.print(f"   {BREAKDOWN_NOTE}")
        d = breakdown["draft"]
        console.print(f"   JPEG draft mode: applies to {d['eligible']} of {d['photos']} dev photos (shorter side >= "
                      f"4x the resize target); decode on those {d['decode_full_ms']} -> {d['decode_draft_ms']} core-ms; "
                      f"over all photos {d['all_decode_full_ms']} -> {d['all_decode_draft_ms']} core-ms; top-1 changed "
                      f"({d['model']} fp32): {d['top1_changed']} of {d['eligible']}.")
    _print_levers(doc.get("levers"), console)
    rows = targets(doc)
    if rows:
        table = Table(title="Targets from the issue (figures, not tests)")
        for col in ("target", "wanted", "measured", ""):
            table.add_column(col)
        for t in rows:
            table.add_row(t["target"], t["wanted"], str(t["measured"]), _mark(t))
        console.print(table)
    console.print(f"Finished in {doc['seconds']} s.")


def _print_levers(levers: dict | None, console: Console) -> None:
    if not levers:
        return
    table = Table(title=f"Levers: server settings ({levers['model']} {levers['precision']}, fresh server each)")
    for col in ("variant", "conc.", "req/s", "p50 ms", "p99 ms", "errors", "batch", "server CPU ms/req", "peak RSS MB"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for r in levers.get("server_variants", []):
        table.add_row(r["variant"], str(r["concurrency"]), f"{r['rps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                      str(r["errors"]), f"{r['mean_batch']:.2f}" if r.get("mean_batch") else "",
                      f"{r['server_cpu_ms_per_request']:.2f}", f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    for r in levers.get("spinning", []):
        console.print(f"   ORT spinning {_spin_label(r)}: model {r['model_images_per_s']} img/s "
                      f"while a decode thread did {r['decodes_per_s']} decodes/s")
    for d in levers.get("draft_large") or []:
        accuracy = (f"; top-1 accuracy {d['top1_full']:.1%} full vs {d['top1_draft']:.1%} draft"
                    if "top1_full" in d else "")
        console.print(f"   Draft mode (the default) on {d['photos']} re-encodes at {d['shorter_side']} px shorter side "
                      f"({d['mean_kb']} KB): decode + preprocess {d['full_ms']} -> {d['draft_ms']} core-ms; top-1 "
                      f"changed: {d['top1_changed']} of {d['photos']}{accuracy} ({d['model']} fp32)")
    t = levers.get("torch_rss_mb")
    if t:
        console.print("   RSS of the server's imports: " + ", ".join(f"{k} {v} MB" for k, v in t.items()))


def _short(precision: str) -> str:
    """'fp32 (torch eager, before imgcls)' -> 'fp32 before' (chart labels)."""
    words = precision.replace("(", " ").replace(")", " ").replace(",", " ").split()
    return " ".join([words[0]] + [w for w in words[1:] if w in ("before", "after") or w.startswith("openvino")])


def _latency_boxes(ax, samples: list[list[float]], labels: list[str], title: str, formatter) -> None:
    """Horizontal box plots on a log axis, first row on top."""
    if samples:
        ax.boxplot(samples, vert=False, showfliers=False)
        ax.set_yticks(range(1, len(samples) + 1), labels, fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(formatter)
        ax.xaxis.set_minor_formatter(formatter)
        ax.invert_yaxis()
    ax.set_title(title)


def write_chart(doc: dict, path: Path) -> Path | None:
    """A PNG of latency distributions: model-only (batch 1) and HTTP at the reference concurrency, plus req/s.

    Horizontal boxes and bars, one labelled line per configuration: with ONNX Runtime, OpenVINO
    and PyTorch rows there are too many for labels under vertical boxes.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return None
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 3 and 40, not 3x10^0 and 4x10^1
    threads = max(doc["settings"]["threads"])
    model_rows = [r for r in doc.get("model_latency", []) if r["batch"] == 1 and r["threads"] == threads]
    c_ref = 8 if 8 in doc["settings"]["concurrency"] else max(doc["settings"]["concurrency"])
    all_rows = doc.get("http", []) + (doc.get("baseline") or {}).get("rows", [])
    http_rows = [r for r in all_rows if r["concurrency"] == c_ref]
    labels = sorted({(r["system"], r["model"], _shown_precision(r)) for r in all_rows}, key=lambda k: (k[0] != "imgcls", k))
    heights = [max(2.0, 0.32 * n + 1.0) for n in (len(model_rows), len(http_rows), len(labels))]
    fig, axes = plt.subplots(3, 1, figsize=(11, sum(heights)), gridspec_kw={"height_ratios": heights})

    _latency_boxes(axes[0], [r["samples_ms"] for r in model_rows],
                   [f"{r['model']} {r['precision']} {r['runtime']}" for r in model_rows],
                   f"Model only, batch 1, {threads} threads (ms/image, log)", plain)
    _latency_boxes(axes[1], [r["samples_ms"] or [0] for r in http_rows],
                   [f"{r['system']} {r['model']} {_short(_shown_precision(r))}" for r in http_rows],
                   f"HTTP latency at concurrency {c_ref} (ms, log)", plain)

    ax = axes[2]
    levels = doc["settings"]["concurrency"]
    height = 0.8 / max(1, len(levels))
    for i, c in enumerate(levels):
        values = [next((r["result"]["rps"] for r in all_rows if (r["system"], r["model"], _shown_precision(r)) == lab
                        and r["concurrency"] == c), 0) for lab in labels]
        ax.barh([y + i * height for y in range(len(labels))], values, height, label=f"concurrency {c}")
    ax.set_yticks([y + height * (len(levels) - 1) / 2 for y in range(len(labels))],
                  [f"{s} {m} {_short(p)}" for s, m, p in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_title("Throughput (req/s)")
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"imgcls bench {doc['started']} ({doc['machine']['cores']} cores)")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown(doc: dict) -> str:
    """The run's figures as Markdown tables (what docs/benchmarks.md quotes)."""
    m = doc["machine"]
    out = [f"Run {doc['started']}: {m['cpu']}, {m['cores']} cores, onnxruntime {m['onnxruntime']}, Python {m['python']}; "
           f"load average {m['load_average_at_start'][0]} at start, {m.get('load_average_at_end', ['?'])[0]} at end; "
           f"{doc['photos']['count']} dev JPEGs (mean {doc['photos']['mean_kb']} KB); {doc['seconds']} s"
           + ("; QUICK run" if doc["settings"]["quick"] else "") + ".", ""]
    if doc.get("server_config"):
        c = doc["server_config"]
        out += [f"Server settings: max batch {c.get('max_batch')}, max wait {c.get('max_wait_ms')} ms, "
                f"{c.get('threads')} ORT thread(s) x {c.get('model_workers') or c.get('cores')} model worker(s), "
                f"queue {c.get('max_queue')}, log level {c.get('log_level')}"
                + (f", extra {' '.join(c['extra_args'])}" if c.get("extra_args") else "") + ".", ""]
    if doc.get("model_latency"):
        out += ["| model | runtime | precision | batch | threads | median ms/img | p90 ms/img | CPU core-ms/img |",
                "|---|---|---|--:|--:|--:|--:|--:|"]
        out += [f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['batch']} | {r['threads']} | {r['median_ms']:.2f} "
                f"| {r['p90_ms']:.2f} | {r['cpu_ms']:.2f} |" for r in doc["model_latency"]]
        out.append("")
    rows = doc.get("http", []) + (doc.get("baseline") or {}).get("rows", [])
    if rows:
        ratios = baseline_ratios(doc)
        out += ["| system | model | precision | concurrency | req/s | p50 ms | p99 ms | errors | x baseline | mean batch "
                "| server CPU ms/req | client CPU ms/req | peak RSS MB | host probe core-ms |",
                "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in rows:
            res = r["result"]
            ratio = ratios.get(_ratio_key(r)) if r["system"] == "imgcls" else None
            out.append(f"| {r['system']} | {r['model']} | {_shown_precision(r)} | {r['concurrency']} | {res['rps']:.1f} "
                       f"| {res['p50_ms']:.1f} | {res['p99_ms']:.1f} | {res['errors']} | {f'{ratio:.2f}x' if ratio else ''} "
                       f"| {r['mean_batch'] or ''} | {r['server_cpu_ms_per_request']:.2f} "
                       f"| {res['client_cpu_ms_per_request']:.3f} | {r['server_peak_rss_mb']:.0f} | {_probe(r)} |")
        out.append("")
    memory = doc.get("memory")
    if memory:
        out += [f"Memory ({memory['model']} {memory['precision']}, {memory['requests']} requests at concurrency "
                f"{memory['concurrency']}, {memory['errors']} errors): ready {memory['rss_ready_mb']} MB, peak "
                f"{memory['peak_rss_mb']} MB, after {memory['rss_after_mb']} MB; torch in the server: "
                f"{'yes' if memory['torch_loaded'] else 'no'}. Cold start to /readyz: "
                f"{', '.join(f'{s:.2f}' for s in memory['cold_start_s'])} s (median {memory['cold_start_median_s']} s)."
                + (f" Baseline peak RSS: {doc['baseline']['peak_rss_mb_kernel']} MB." if (doc.get('baseline') or {}).get(
                    "peak_rss_mb_kernel") else ""), ""]
    breakdown = doc.get("breakdown")
    if breakdown:
        out += [f"| model | precision | decode | preprocess | model (batch) | response | HTTP & other | server total "
                f"| client | ceiling req/s | measured req/s (c{breakdown['reference_concurrency']}) | of ceiling "
                f"| model, separate run |",
                "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in breakdown["rows"]:
            out.append(f"| {r['model']} | {_shown_precision(r)} | {_stage(r, 'decode')} | {_stage(r, 'preprocess')} "
                       f"| {_stage(r, 'model')} ({r['model_batch']}) | {r['response_ms']:.2f} | {r.get('http_other_ms', 0):.2f} "
                       f"| {r.get('server_total_ms', 0):.2f} | {r.get('client_ms', 0):.2f} | {r.get('ceiling_rps', 0):.0f} "
                       f"| {r.get('measured_rps', 0):.1f} | {r.get('fraction_of_ceiling', 0):.0%} | {_separate_model(r)} |")
        out += ["", BREAKDOWN_NOTE]
        d = breakdown["draft"]
        out += ["", f"JPEG draft mode: applies to {d['eligible']} of {d['photos']} dev photos; decode on those "
                f"{d['decode_full_ms']} -> {d['decode_draft_ms']} core-ms; top-1 changed: {d['top1_changed']} of "
                f"{d['eligible']}.", ""]
    levers = doc.get("levers")
    if levers:
        out += ["| server variant | concurrency | req/s | p50 ms | p99 ms | errors | mean batch | server CPU ms/req | peak RSS MB |",
                "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
        out += [f"| {r['variant']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
                f"| {r['errors']} | {r['mean_batch'] or ''} | {r['server_cpu_ms_per_request']:.2f} | {r['peak_rss_mb']:.0f} |"
                for r in levers.get("server_variants", [])]
        out.append("")
    rows = targets(doc)
    if rows:
        out += ["| target | wanted | measured | |", "|---|---|---|---|"]
        out += [f"| {t['target']} | {t['wanted']} | {t['measured']} | {_plain_mark(t)} |" for t in rows]
        out.append("")
    return "\n".join(out)
