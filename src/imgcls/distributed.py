"""Batch classification on Ray Data: `imgcls predict SOURCE --engine ray --output results.parquet`.

The pipeline, one Ray Data dataset streamed end to end::

    paths (driver) -> read bytes + decode + preprocess (stateless tasks, spread over the cluster)
                   -> ONNX inference (actor pool; each actor loads the verified artifact once)
                   -> result rows streamed back to the driver -> part files -> one merged output

Guarantees:

* An unreadable file becomes a row with ``error`` set; it never aborts the job.
* Results are written every ``part_rows`` images (or every ``PART_SECONDS``) as part files in
  ``<output>.parts/`` — each written to a temporary name and renamed, so a killed run leaves only
  whole parts. The final output is written the same way (temp file, then rename).
* Re-running on the same output skips paths already classified successfully by the same model
  (existing output and leftover parts both count); error rows are retried. Kept rows are
  relabelled in the language asked for (class indices and scores do not depend on it), so a
  re-run with another ``--lang`` never leaves a file in two languages.
* Ray is optional (``pip install 'imgcls[ray]'``): this module imports ray and pyarrow only inside
  functions, so importing it — or anything else in imgcls — never needs them.

Output columns: see ``result_schema``; scores are rounded to 6 decimals as the local engine does.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from imgcls.catalog.entries import Preprocessing
from imgcls.errors import ImgclsError, InputError, ModelError

__all__ = [
    "FORMATS", "RESULT_COLUMNS", "InferenceActor", "decode_batch", "list_sources", "merge_rows", "merge_tables",
    "parts_dir", "predict_with_ray", "read_results", "read_results_table", "relabel_table",
    "write_results", "write_results_table",
]

FORMATS = (".parquet", ".csv", ".jsonl")
RESULT_COLUMNS = ("path", "model", "precision", "top_indices", "top_labels", "top_scores", "error")
LIST_FILE_SUFFIXES = {".txt", ".lst", ".list"}
DEFAULT_PART_ROWS = 512
ACTOR_MEMORY = 512 * 1024 * 1024
PART_SECONDS = 30.0  # flush a part at least this often, so a killed run loses at most ~30 s of work
RAY_MISSING = "Ray is not installed. Install the extra: pip install 'imgcls[ray]'"


# --- inputs -----------------------------------------------------------------------------------
def list_sources(sources: list[str]) -> tuple[list[str], list[str]]:
    """Expand folders (recursively, image suffixes), globs, files and list files into absolute paths.

    A list file is a ``.txt``/``.lst``/``.list`` file with one path per line (blank lines and
    lines starting with ``#`` ignored); relative entries are relative to the list file's folder.
    Paths stay absolute but unresolved (symlinks kept) because the ``path`` column is the key that
    resume matches on, and every node of a cluster must be able to open it.

    Returns:
        (paths, problems): unique paths in order, and inputs that matched nothing.
    """
    from imgcls.cli._common import expand_inputs

    expanded, problems = [], []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_file() and path.suffix.lower() in LIST_FILE_SUFFIXES:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{source}: cannot read the list file ({exc.__class__.__name__})")
                continue
            entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
            if not entries:
                problems.append(f"{source}: the list file has no paths")
            expanded.extend(str(path.parent / Path(entry).expanduser()) for entry in entries)
        else:
            files, found_problems = expand_inputs([source])
            expanded.extend(str(f) for f in files)
            problems.extend(found_problems)
    seen: set[str] = set()
    unique = []
    for text in expanded:
        absolute = os.path.abspath(text)
        if absolute in seen:
            continue
        seen.add(absolute)
        if not _is_utf8(absolute):  # the path column is UTF-8 text in every output format
            problems.append(f"{absolute.encode('utf-8', 'backslashreplace').decode()}: the file name is not "
                            "valid UTF-8; rename it to classify it on Ray")
            continue
        unique.append(absolute)
    return unique, problems


def _is_utf8(path: str) -> bool:
    """False for names the OS gave as undecodable bytes (Python keeps them as surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- the two pipeline stages (module level so Ray pickles them by reference) -------------------
def decode_batch(batch: dict, preprocessing: Preprocessing, max_bytes: int, max_pixels: int,
                 draft: bool = True) -> dict:
    """Ray Data task: paths -> float32 CHW arrays, with a per-row error message instead of raising.
    ``draft``: large JPEGs decoded at reduced scale, as ``Classifier(draft=True)``."""
    from imgcls.engine import _read_file
    from imgcls.preprocess import decode_image, preprocess

    size = preprocessing.crop
    paths = [str(p) for p in batch["path"]]
    arrays = np.zeros((len(paths), 3, size, size), np.float32)
    errors = []
    for i, path in enumerate(paths):
        try:
            data = _read_file(Path(path), max_bytes)
            decoded = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels,
                                   draft_size=preprocessing.resize if draft else None)
            arrays[i] = preprocess(decoded.image, preprocessing)
            errors.append("")
        except ImgclsError as exc:
            errors.append(exc.message)
        except Exception as exc:  # one odd file must never cost the job; say what kind of failure
            errors.append(f"Could not decode the file ({exc.__class__.__name__}).")
    # "" rather than None keeps the column a plain string column across blocks.
    return {"path": np.asarray(paths, dtype=object), "array": arrays, "error": np.asarray(errors, dtype=object)}


class InferenceActor:
    """Ray Data actor: loads the verified ONNX artifact once, then classifies batches.

    The artifact is opened from ``artifact_path`` when that file exists on this node with the
    manifest's checksum; otherwise (a node without the driver's model store) its bytes are fetched
    once from the object store (``artifact_ref``) into a local cache file.
    """

    def __init__(self, artifact_path: str, artifact_sha256: str, artifact_ref, model_name: str, precision: str,
                 labels: tuple[str, ...], k: int, threads: int, openvino_precision: str | None = None):
        path = _local_artifact(Path(artifact_path), artifact_sha256, artifact_ref)
        if openvino_precision:
            self.runtime = _openvino_runtime(path, threads, openvino_precision)
        else:
            from imgcls.runtimes.onnx import OnnxRuntime

            self.runtime = OnnxRuntime(path, threads=threads)
        self.model_name, self.precision, self.labels, self.k = model_name, precision, labels, k

    def __call__(self, batch: dict):
        import pyarrow as pa

        from imgcls.engine import ranked, softmax

        errors = [str(e) for e in batch["error"]]
        ok = [i for i, e in enumerate(errors) if not e]
        probabilities = softmax(self.runtime.run(batch["array"][ok])) if ok else None
        tops: dict[int, list[tuple[int, float]]] = {}
        for row, probs in zip(ok, probabilities if probabilities is not None else []):
            tops[row] = ranked(probs, self.k)
        columns = {name: [] for name in RESULT_COLUMNS}
        for i, path in enumerate(batch["path"]):
            top = tops.get(i, [])
            columns["path"].append(str(path))
            columns["model"].append(self.model_name)
            columns["precision"].append(self.precision)
            columns["top_indices"].append([index for index, _ in top])
            columns["top_labels"].append([self.labels[index] for index, _ in top])
            columns["top_scores"].append([score for _, score in top])
            columns["error"].append(errors[i] or None)
        return pa.table(columns, schema=result_schema())


def _openvino_runtime(path: Path, threads: int, verified_precision: str):
    """OpenVINO on this node, only if it can run the precision the artifact was verified in (bf16
    needs bf16 instructions; a node without them would run f32, which the driver's record does not
    cover)."""
    import socket

    from imgcls.runtimes.openvino import OpenVinoRuntime, supported_precisions

    if verified_precision not in supported_precisions():
        raise ModelError(f"Node {socket.gethostname()} cannot run OpenVINO in {verified_precision}, the precision the "
                         f"artifact was verified in. Use --runtime onnxruntime, or a cluster of like CPUs.")
    return OpenVinoRuntime(path, threads=threads, precision=verified_precision)


def _local_artifact(path: Path, sha256: str, ref) -> Path:
    from imgcls.catalog.store import sha256_file

    if path.is_file() and sha256_file(path) == sha256:
        return path
    cache = Path(tempfile.gettempdir()) / "imgcls-artifacts"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{sha256}.onnx"
    if not (target.is_file() and sha256_file(target) == sha256):
        import ray

        data = ray.get(ref)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ImgclsError("The model artifact received from the driver is corrupt.")
        tmp = cache / f".{sha256}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target


# --- results on disk ---------------------------------------------------------------------------
def result_schema():
    import pyarrow as pa

    return pa.schema([
        ("path", pa.string()), ("model", pa.string()), ("precision", pa.string()),
        ("top_indices", pa.list_(pa.int64())), ("top_labels", pa.list_(pa.string())),
        ("top_scores", pa.list_(pa.float64())), ("error", pa.string()),
    ])


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def read_results(path: Path) -> list[dict]:
    """Rows of a results file written by `write_results` (any of the three formats).

    Raises:
        InputError: the file exists but is not a results file we can read.
    """
    return read_results_table(path).to_pylist()


def read_results_table(path: Path):
    """A results file (any of the three formats) as a pyarrow Table with ``result_schema``.

    Text formats are parsed in chunks, so a million-row output never exists as Python rows.

    Raises:
        InputError: the file exists but is not a results file we can read.
    """
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return _conform(pq.read_table(path))
        with path.open(encoding="utf-8", newline="") as handle:
            if suffix == ".jsonl":
                return _rows_to_table(_normalise(json.loads(line)) for line in handle if line.strip())
            return _rows_to_table(_normalise(_decode_csv_lists(record)) for record in csv.DictReader(handle))
    except Exception as exc:  # OSError, bad JSON/CSV, missing columns, pyarrow's ArrowInvalid, ...
        raise InputError(f"The existing output {path.name} cannot be read as imgcls results "
                         f"({exc.__class__.__name__}); delete it or choose another --output.") from None


def _decode_csv_lists(record: dict) -> dict:
    for column in ("top_indices", "top_labels", "top_scores"):
        record[column] = json.loads(record[column] or "[]")
    return record


def _normalise(record: dict) -> dict:
    return {
        "path": str(record["path"]), "model": str(record["model"]), "precision": record.get("precision") or None,
        "top_indices": [int(i) for i in record["top_indices"]],
        "top_labels": [str(label) for label in record["top_labels"]],
        "top_scores": [float(s) for s in record["top_scores"]],
        "error": record.get("error") or None,
    }


ROWS_PER_CHUNK = 20_000  # Python rows alive at once when converting to or from the text formats


def _rows_to_table(rows):
    import pyarrow as pa

    schema, batches, chunk = result_schema(), [], []
    for row in rows:
        chunk.append(row)
        if len(chunk) == ROWS_PER_CHUNK:
            batches.append(pa.RecordBatch.from_pylist(chunk, schema=schema))
            chunk = []
    if chunk:
        batches.append(pa.RecordBatch.from_pylist(chunk, schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


def _conform(table):
    """``table`` with exactly the result columns and types (parts and outputs may differ in
    details such as a null-typed error column), so tables can be concatenated. Applied where a
    table comes from disk; every table after that already has ``result_schema``. Files written
    before rows said their precision get a null ``precision`` column: unknown, not guessed."""
    import pyarrow as pa

    if "precision" not in table.column_names:
        table = table.append_column("precision", pa.nulls(table.num_rows, pa.string()))
    return table.select(list(RESULT_COLUMNS)).cast(result_schema())


def write_results(rows: list[dict], path: Path) -> None:
    """Write rows in the format the suffix names, atomically (temporary file, then rename)."""
    import pyarrow as pa

    write_results_table(pa.Table.from_pylist(rows, schema=result_schema()), path)


def write_results_table(table, path: Path) -> None:
    """Write a results Table in the format the suffix names, atomically (temporary file, then rename)."""
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".parquet":
            pq.write_table(table, tmp)
        elif suffix == ".jsonl":
            with tmp.open("w", encoding="utf-8") as handle:
                for row in _iter_rows(table):
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            with tmp.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(RESULT_COLUMNS)
                for row in _iter_rows(table):
                    writer.writerow([row["path"], row["model"], row["precision"] or "",
                                     json.dumps(row["top_indices"]), json.dumps(row["top_labels"], ensure_ascii=False),
                                     json.dumps(row["top_scores"]), row["error"] or ""])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _iter_rows(table):
    for batch in table.to_batches(max_chunksize=ROWS_PER_CHUNK):
        yield from batch.to_pylist()


def merge_rows(*row_lists: list[dict]) -> list[dict]:
    """Merge result rows, oldest list first: one row per path, sorted by path.

    A newer row replaces an older one, except that a newer error never replaces an older
    success of the same model (a file deleted after it was classified keeps its result).
    """
    merged: dict[str, dict] = {}
    for rows in row_lists:
        for row in rows:
            old = merged.get(row["path"])
            if old and row["error"] and not old["error"] and old["model"] == row["model"]:
                continue
            merged[row["path"]] = row
    return [merged[path] for path in sorted(merged)]


def merge_tables(*tables):
    """`merge_rows` for pyarrow Tables, oldest first, with the same rules and order.

    Only the rows of paths that occur more than once (retried errors, a re-run with another
    model) become Python rows and go through `merge_rows`; the rest stay in Arrow, which keeps a
    million-row merge to a few hundred MB instead of a few GB."""
    import pyarrow as pa
    import pyarrow.compute as pc

    combined = pa.concat_tables(list(tables) or [result_schema().empty_table()])
    ordered = combined.sort_by([("path", "ascending")])  # a stable sort: oldest first within a path
    paths = ordered["path"]
    same_as_next = pc.equal(paths[:-1], paths[1:]).to_numpy(zero_copy_only=False)
    repeated = np.zeros(ordered.num_rows, dtype=bool)
    repeated[:-1] |= same_as_next
    repeated[1:] |= same_as_next
    if not repeated.any():
        return ordered
    resolved = merge_rows(ordered.filter(repeated).to_pylist())  # in path order, oldest first per path
    singles = ordered.filter(~repeated)
    merged = pa.concat_tables([singles, pa.Table.from_pylist(resolved, schema=result_schema())])
    return merged.sort_by([("path", "ascending")])


def _succeeded(table):
    """Boolean array: the row has no error (null or empty, as ``not row["error"]``)."""
    import pyarrow.compute as pc

    error = table["error"]
    return pc.fill_null(pc.or_kleene(pc.is_null(error), pc.equal(error, "")), True)


def _class_indices(table, n_classes: int):
    """The ``top_indices`` values flattened; for each value whether it is a class of an
    ``n_classes``-class model; for each row whether it has a value that is not (numpy bools)."""
    import pyarrow.compute as pc

    indices = table["top_indices"].combine_chunks()
    flat = pc.list_flatten(indices)
    valid = pc.and_(pc.greater_equal(flat, 0), pc.less(flat, n_classes)).to_numpy(zero_copy_only=False)
    foreign = np.zeros(table.num_rows, dtype=bool)
    foreign[pc.list_parent_indices(indices).to_numpy()[~valid]] = True
    return flat, valid, foreign


def _answers(table, model: str, foreign):
    """Boolean array: a success of ``model`` whose class indices the model has (``foreign``
    from `_class_indices` is false), not a hand-edited or foreign row."""
    import pyarrow.compute as pc

    of_model = pc.fill_null(pc.equal(table["model"], model), False)
    return pc.and_(pc.and_(_succeeded(table), of_model), ~foreign)


def _pending(files: list[str], table, model: str, precision: str, k: int,
             n_classes: int) -> tuple[list[str], dict[str, int]]:
    """The files that still need work: all but those answered by this model (``_answers``) in this
    precision with this top-k in ``table``; anything else is classified again. A row with no
    precision (written before rows said it) counts as this precision: redoing a whole archive
    for an unknown would cost more than it could correct. (Kept as Arrow arrays, not a Python
    set, so resuming a million-row output costs no extra million strings.)

    Returns:
        (pending, other_precisions): the files to classify, and how many of them each other
        precision answered with this model and top-k (the driver says so before redoing them).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return list(files), {}
    with_k = pc.equal(pc.fill_null(pc.list_value_length(table["top_indices"]), 0), k)
    _, _, foreign = _class_indices(table, n_classes)
    answered = pc.and_(_answers(table, model, foreign), with_k)
    same_precision = pc.fill_null(pc.equal(table["precision"], precision), True)
    done = table.filter(pc.and_(answered, same_precision))["path"]
    paths = pa.array(files, pa.string())
    is_done = pc.is_in(paths, value_set=done).to_numpy(zero_copy_only=False)
    other = table.filter(pc.and_(answered, pc.invert(same_precision)))
    other = other.filter(pc.is_in(other["path"], value_set=paths))
    counts = {item["values"]: item["counts"] for item in pc.value_counts(other["precision"]).to_pylist()}
    return [path for path, finished in zip(files, is_done) if not finished], counts


def relabel_table(table, model: str, labels: tuple[str, ...]):
    """Rows of ``model`` with their labels rewritten from their class indices in ``labels`` (the
    language asked for); other rows, and rows with indices outside ``labels``, unchanged."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return table
    flat, valid, foreign = _class_indices(table, len(labels))
    safe = pc.if_else(pa.array(valid), flat, 0)  # only rows of `_answers` keep their relabelling
    lengths = pc.fill_null(pc.list_value_length(table["top_indices"]), 0).to_numpy(zero_copy_only=False)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    relabelled = pa.ListArray.from_arrays(offsets, pa.array(labels, pa.string()).take(safe))
    top_labels = pc.if_else(_answers(table, model, foreign), relabelled, table["top_labels"].combine_chunks())
    return table.set_column(RESULT_COLUMNS.index("top_labels"), "top_labels", top_labels)


def _read_parts(folder: Path):
    """Every whole part file in ``folder``, oldest first, as one Table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for part in sorted(folder.glob("part-*.parquet")):
        try:
            tables.append(_conform(pq.read_table(part)))
        except Exception:  # a part is renamed into place whole, so this is outside damage: redo it
            continue
    return pa.concat_tables(tables) if tables else result_schema().empty_table()


class _PartWriter:
    """Buffers result rows and writes them as whole parquet part files."""

    def __init__(self, folder: Path, rows_per_part: int):
        self.folder, self.rows_per_part, self.run_id = folder, rows_per_part, str(time.time_ns())
        self.buffer: list = []
        self.buffered, self.count, self.last_flush = 0, 0, time.monotonic()

    def add(self, table) -> None:
        self.buffer.append(table)
        self.buffered += table.num_rows
        if self.buffered >= self.rows_per_part or time.monotonic() - self.last_flush >= PART_SECONDS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.last_flush = time.monotonic()
        if not self.buffered:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{self.run_id}-{self.count:06d}.parquet"
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(pa.concat_tables(self.buffer), tmp)
        os.replace(tmp, self.folder / name)
        self.count += 1
        self.buffer, self.buffered = [], 0


# --- the driver --------------------------------------------------------------------------------
def predict_with_ray(paths: list[str], model: str | None = None, precision: str = "auto", top_k: int = 5,
                     lang: str = "en", output: Path | None = None, batch_size: int = 8, actors: int = 1,
                     address: str | None = None, threads: int | None = None,
                     part_rows: int = DEFAULT_PART_ROWS, draft: bool = True, runtime: str = "onnxruntime") -> int:
    """Classify ``paths`` (files, folders, globs, list files) on Ray Data into ``output``.

    Args:
        paths: inputs as given on the command line.
        model / precision / top_k / lang: as for the local engine.
        output: results file; .parquet, .csv or .jsonl. Required. Existing results are resumed.
        batch_size: images per model call inside an inference actor.
        actors: inference actors (each loads the model once and uses ``threads`` cores).
        address: an existing cluster (``ray://host:10001`` or ``host:6379``); None starts a local one.
        threads: ONNX Runtime threads per actor, also the CPUs each actor reserves (default 1).
        part_rows: results per part file, the granularity of resuming after a crash.
        draft: decode large JPEGs at reduced scale (see ``Classifier``).
        runtime: "onnxruntime", or "openvino" for an artifact verified on it (the driver checks
            the record; each actor checks its node runs the verified inference precision).

    Returns:
        Exit code: 0 every listed file classified, 1 some failed, 2 none / bad usage, 3 model problem.
    """
    from rich.markup import escape

    from imgcls.cli._common import console_err

    try:
        return _predict(paths, model, precision, top_k, lang, output, batch_size, actors, address,
                        threads or 1, max(1, part_rows), draft, runtime)
    except ImgclsError as exc:
        console_err.print(f"[bold red]Error:[/] {escape(exc.message)}")
        return exc.exit_code


def _predict(paths, model, precision, top_k, lang, output, batch_size, actors, address, threads, part_rows,
             draft, runtime) -> int:
    from rich.markup import escape

    from imgcls.artifacts import auto_precision, build_in_subprocess, ensure_artifact
    from imgcls.catalog import default_model_name, resolve_model
    from imgcls.cli._common import console_err

    if output is None:
        raise InputError(f"--engine ray needs --output FILE ({', '.join(FORMATS)}).")
    output = Path(output).expanduser().absolute()
    if output.suffix.lower() not in FORMATS:
        raise InputError(f"Unsupported output format '{output.suffix or output.name}'; use {', '.join(FORMATS)}.")
    if not output.parent.is_dir():
        raise InputError(f"The output folder {output.parent} does not exist.")
    _import_ray()  # fail early and clearly, before any listing work
    if address:
        _check_reachable(address)

    reference = model or default_model_name()
    spec = resolve_model(reference)
    k = max(1, min(top_k, spec.num_classes))
    # Resolve the verified artifact here, once, so actors only ever open it. A missing one is
    # built on first use as by the local engine, but in a child process: the driver stays free of torch.
    how = {"builder": build_in_subprocess, "reference": reference}
    found = {}
    if precision == "auto":
        precision, found = auto_precision(spec, runtime=runtime, **how)
    artifact_path, manifest = found.get(precision) or ensure_artifact(spec, precision, **how)
    openvino_precision = None
    if runtime == "openvino":
        from imgcls.runtimes.openvino import require_verification

        record = require_verification(spec, precision, (artifact_path, manifest), model)
        openvino_precision = record["inference_precision"]
    elif runtime != "onnxruntime":
        raise InputError(f"Unknown runtime '{runtime}': use onnxruntime or openvino.")

    files, problems = list_sources(paths)
    for problem in problems:
        console_err.print(f"[yellow]Warning:[/] {escape(problem)}")
    if not files:
        raise InputError("No input files found.")

    import pyarrow as pa  # installed with ray, which _import_ray has checked
    import pyarrow.compute as pc

    existing = read_results_table(output) if output.exists() else result_schema().empty_table()
    folder = parts_dir(output)
    labels = spec.labels(lang)
    pending, redone = _pending(files, merge_tables(existing, _read_parts(folder)), spec.name, precision, k,
                               len(labels))
    console_err.print(f"{len(files)} files: {len(files) - len(pending)} already classified, "
                      f"{len(pending)} to classify with {spec.name} ({precision}"
                      f"{', OpenVINO ' + openvino_precision if openvino_precision else ''}) on Ray.")
    for other, count in sorted(redone.items()):
        # Precision is part of the resume check, as the model is: one output, one configuration.
        console_err.print(f"[yellow]Note:[/] {count} of them were classified before in {other}; they are "
                          f"classified again in {precision} (--precision {other} keeps them).")
    if pending:
        seconds = _run_pipeline(pending, spec, precision, artifact_path, manifest, k, lang, batch_size, actors,
                                address, threads, _PartWriter(folder, part_rows), draft, openvino_precision)
        console_err.print(f"Classified {len(pending)} files in {seconds:.1f} s "
                          f"({len(pending) / seconds:.1f} images/s, actor start-up included).")

    final = relabel_table(merge_tables(existing, _read_parts(folder)), spec.name, labels)
    del existing
    write_results_table(final, output)
    shutil.rmtree(folder, ignore_errors=True)  # merged into the output, which was renamed into place
    ours = final.filter(pc.is_in(final["path"], value_set=pa.array(files, pa.string())))
    failed = ours.filter(pc.invert(_succeeded(ours)))
    for row in failed.slice(0, 20).to_pylist():
        console_err.print(f"[yellow]Skipped[/] {escape(row['path'])}: {escape(row['error'])}")
    if failed.num_rows > 20:
        console_err.print(f"[yellow]... and {failed.num_rows - 20} more unreadable files (see the error column).[/]")
    console_err.print(f"Wrote {final.num_rows} results to {escape(str(output))} "
                      f"({ours.num_rows - failed.num_rows} classified, {failed.num_rows} unreadable).")
    return 0 if not failed.num_rows else (1 if failed.num_rows < ours.num_rows else 2)


def _import_ray():
    # No usage-stats call home: imgcls never talks to the network at run time.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


def _start_ray(address: str | None, actors: int, threads: int) -> None:
    import logging

    ray = _import_ray()
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        try:
            ray.init(address=address, **quiet)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError depending on the address form
            raise InputError(f"Could not join the Ray cluster at {address}: {exc}") from None
        return
    # A local cluster sized to this machine, plus one logical CPU so decoding tasks can always
    # be scheduled next to the actors (on a 2-core box they share the cores either way).
    cpus = max(os.cpu_count() or 1, actors * threads + 1)
    # "local": a new cluster even when this machine has a `ray start` one (or a stale record of one).
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, object_store_memory=1 << 30, **quiet)


def _check_reachable(address: str) -> None:
    """Fail in seconds when nothing listens at ``host:port`` (ray.init would retry for minutes)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not (host and port.isdigit()):
        return  # "auto" and other forms: Ray resolves and reports those itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise InputError(f"Could not join the Ray cluster at {address}: nothing answers there "
                         f"({exc.strerror or exc.__class__.__name__}).") from None


def _run_pipeline(pending, spec, precision, artifact_path, manifest, k, lang, batch_size, actors, address, threads,
                  writer, draft, openvino_precision=None):
    import logging

    from imgcls.cli._common import console_err, progress_bar
    from imgcls.preprocess import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

    ray = _import_ray()
    try:
        _start_ray(address, actors, threads)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours is on stderr below
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        # Remote nodes may not share the driver's model store: ship the artifact through the
        # object store (fetched only by actors that cannot find the file locally).
        artifact_ref = ray.put(Path(artifact_path).read_bytes()) if address else None
        # Small blocks (~32 paths) so work spreads over every decoder and actor from the start.
        blocks = min(len(pending), max(4 * actors, len(pending) // 32))
        dataset = ray.data.from_items([{"path": p} for p in pending], override_num_blocks=blocks)
        dataset = dataset.map_batches(
            decode_batch, batch_size=None, batch_format="numpy", num_cpus=1,  # one block per task
            fn_kwargs={"preprocessing": spec.preprocessing, "max_bytes": DEFAULT_MAX_BYTES,
                       "max_pixels": DEFAULT_MAX_PIXELS, "draft": draft})
        dataset = dataset.map_batches(
            InferenceActor, batch_size=batch_size, batch_format="numpy", num_cpus=threads,
            compute=ray.data.ActorPoolStrategy(size=actors),
            # The session, its arena and a few batches in flight. Reserving it also keeps Ray Data
            # from fusing decoding into the actors (fusion needs equal remote args), so decoding
            # stays in the task pool, spread over every node's CPUs.
            memory=ACTOR_MEMORY,
            fn_constructor_kwargs={"artifact_path": str(artifact_path), "artifact_sha256": manifest["sha256"],
                                   "artifact_ref": artifact_ref, "model_name": spec.name, "precision": precision,
                                   "labels": spec.labels(lang), "k": k, "threads": threads,
                                   "openvino_precision": openvino_precision})
        started = time.perf_counter()
        with progress_bar(transient=False) as bar:
            task = bar.add_task(f"Classifying on Ray ({actors} actor{'s' * (actors > 1)})", total=len(pending))
            try:
                for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                    writer.add(table)
                    bar.advance(task, table.num_rows)
            finally:
                writer.flush()  # Ctrl-C or a crash still keeps every finished row
        return time.perf_counter() - started
    except (ImgclsError, KeyboardInterrupt):
        raise
    except Exception as exc:  # Ray's own failures (a lost node, an actor that died, ...)
        console_err.print(f"[red]The Ray job failed:[/] {exc.__class__.__name__}: {str(exc)[:500]}")
        console_err.print("Finished results are kept; re-run the same command to resume.")
        raise ImgclsError("The Ray job failed; re-run to resume from the saved parts.") from None
    finally:
        ray.shutdown()
