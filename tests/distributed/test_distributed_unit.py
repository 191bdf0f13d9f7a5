"""The Ray path's pieces that need no cluster: listing, result files, merging, usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imgcls.distributed as distributed
from imgcls.catalog import resolve_model
from imgcls.distributed import (
    _pending,
    list_sources,
    merge_rows,
    merge_tables,
    parts_dir,
    predict_with_ray,
    read_results,
    read_results_table,
    relabel_table,
    write_results,
    write_results_table,
)
from imgcls.errors import InputError


def row(path: str, *, error: str | None = None, model: str = "m", scores=(0.9, 0.1), precision="int8") -> dict:
    ok = error is None
    return {"path": path, "model": model, "precision": precision, "top_indices": [3, 1] if ok else [],
            "top_labels": ["c3", "c1"] if ok else [], "top_scores": list(scores) if ok else [], "error": error}


def test_core_imports_never_import_ray_or_av():
    code = ("import sys, imgcls, imgcls.engine, imgcls.cli, imgcls.distributed, imgcls.video; "
            "print(sorted(m for m in ('ray', 'av', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_list_sources_folders_list_files_and_dedupe(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.jpg", "a/b/two.PNG", "a/skip.txt", "three.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    listing = tmp_path / "lists" / "files.txt"
    listing.parent.mkdir()
    listing.write_text(f"# comment\n\n../a/one.jpg\n{tmp_path / 'three.jpeg'}\n  ../missing.jpg  \n")
    paths, problems = list_sources([str(tmp_path / "a"), str(listing), str(tmp_path / "a" / "one.jpg")])
    assert paths == [str(tmp_path / "a" / "b" / "two.PNG"), str(tmp_path / "a" / "one.jpg"),
                     str(tmp_path / "three.jpeg"), str(tmp_path / "missing.jpg")]
    assert problems == []
    empty = tmp_path / "empty.lst"
    empty.write_text("# nothing\n")
    _, problems = list_sources([str(empty), str(tmp_path / "lists")])
    assert any("no paths" in p for p in problems) and any("no image files" in p for p in problems)


def test_a_file_name_that_is_not_utf8_is_reported_not_listed(tmp_path):
    import os

    (tmp_path / "fine.jpg").write_bytes(b"x")
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg"), "wb") as handle:  # Latin-1 bytes
        handle.write(b"x")
    paths, problems = list_sources([str(tmp_path)])
    assert paths == [str(tmp_path / "fine.jpg")]
    assert len(problems) == 1 and "caf\\udce9.jpg" in problems[0] and "not valid UTF-8" in problems[0]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_results_round_trip(tmp_path, suffix):
    rows = [row("/x/été, \"quoted\".jpg"), row("/x/bad.jpg", error="File is not a supported image (detected: text).")]
    path = tmp_path / f"out{suffix}"
    write_results(rows, path)
    assert read_results(path) == rows
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file, renamed into place
    if suffix == ".csv":
        import csv

        header, first, second = list(csv.reader(path.open(encoding="utf-8", newline="")))
        assert header == ["path", "model", "precision", "top_indices", "top_labels", "top_scores", "error"]
        assert first[2:] == ["int8", "[3, 1]", '["c3", "c1"]', "[0.9, 0.1]", ""]  # lists as JSON, null as empty
        assert second[3:6] == ["[]", "[]", "[]"]
    if suffix == ".jsonl":
        assert json.loads(path.read_text().splitlines()[1])["error"].startswith("File is not")


def test_damaged_output_is_a_clear_error(tmp_path):
    for name, content in (("out.parquet", b"PAR1 not really"), ("out.jsonl", b"{not json\n"), ("out.csv", b"a,b\n1,2\n")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match="cannot be read as imgcls results"):
            read_results(tmp_path / name)


def test_merge_rows_rules():
    old = [row("/a"), row("/b", error="bad"), row("/c")]
    new = [row("/b"), row("/c", error="gone now"), row("/d", error="bad"), row("/a", model="other", scores=(0.5, 0.4))]
    merged = merge_rows(old, new)
    assert [r["path"] for r in merged] == ["/a", "/b", "/c", "/d"]
    by = {r["path"]: r for r in merged}
    assert by["/b"]["error"] is None  # a retried error that now succeeds
    assert by["/c"]["error"] is None  # a later error never hides an earlier success of the same model
    assert by["/a"]["model"] == "other"  # a different model's newer answer replaces the old one
    assert by["/d"]["error"] == "bad"


# Rows as a resumed run meets them: a few paths seen again, by two models, with and without errors.
_ROWS = st.builds(
    lambda path, model, error, score: row(f"/p/{path}", model=model, error=error, scores=(score, 0.0)),
    st.sampled_from(["a", "b", "é", "B", "a/b", "ab"]), st.sampled_from(["m", "n"]),
    st.sampled_from([None, None, "bad", ""]), st.floats(0, 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_ROWS, max_size=8), max_size=4))
def test_merge_tables_follows_merge_rows_exactly(row_lists):
    """The Arrow merge the driver uses gives the rows, order and winners of the reference rules."""
    import pyarrow as pa

    tables = [pa.Table.from_pylist(rows, schema=distributed.result_schema()) for rows in row_lists]
    assert merge_tables(*tables).to_pylist() == merge_rows(*row_lists)


def test_pending_keeps_only_this_models_complete_answers_out():
    import pyarrow as pa

    k5 = {**row("/done", model="m"), "top_indices": [1, 2, 3, 4, 0], "top_labels": list("abcde"),
          "top_scores": [0.5, 0.2, 0.1, 0.1, 0.1]}
    rows = [k5, row("/other-k", model="m"), row("/failed", model="m", error="bad"), {**k5, "path": "/other-model",
            "model": "n"}, {**k5, "path": "/foreign", "top_indices": [1, 2, 3, 4, 99]},
            {**k5, "path": "/one-past", "top_indices": [1, 2, 3, 4, 10]},  # a class the 10-class model lacks
            {**k5, "path": "/fp32", "precision": "fp32"}, {**k5, "path": "/unknown", "precision": None},
            {**k5, "path": "/fp32-not-asked", "precision": "fp32"}]
    table = pa.Table.from_pylist(rows, schema=distributed.result_schema())
    files = ["/new", "/foreign", "/done", "/other-model", "/one-past", "/failed", "/other-k", "/fp32", "/unknown"]
    assert _pending(files, table, "m", "int8", 5, 10) == (
        ["/new", "/foreign", "/other-model", "/one-past", "/failed", "/other-k", "/fp32"], {"fp32": 1})
    assert _pending(files, table, "m", "int8", 5, 11)[0] == ["/new", "/foreign", "/other-model", "/failed",
                                                             "/other-k", "/fp32"]
    # Asked for fp32: the INT8 answers are redone, the fp32 one and the one of unknown precision kept.
    assert _pending(files, table, "m", "fp32", 5, 10) == (
        ["/new", "/foreign", "/done", "/other-model", "/one-past", "/failed", "/other-k"], {"int8": 1})
    assert _pending(files, table.slice(0, 0), "m", "int8", 5, 10) == (files, {})


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_outputs_written_before_rows_said_their_precision_still_resume(tmp_path, suffix):
    """An output from an imgcls whose rows had no precision column reads with precision unknown
    (null), and its answers count as done whatever precision the new run uses."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    old = {**row("/x/a.jpg"), "top_indices": [1, 2], "top_labels": ["a", "b"]}
    del old["precision"]
    path = tmp_path / f"old{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist([old]), path)
    elif suffix == ".jsonl":
        path.write_text(json.dumps(old) + "\n")
    else:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(old))
            writer.writeheader()
            writer.writerow({**old, **{c: json.dumps(old[c]) for c in ("top_indices", "top_labels", "top_scores")},
                             "error": ""})
    table = read_results_table(path)
    assert table.to_pylist() == [{**old, "precision": None}]
    for precision in ("fp32", "int8"):
        assert _pending(["/x/a.jpg", "/x/b.jpg"], table, "m", precision, 2, 10) == (["/x/b.jpg"], {})


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_text_outputs_round_trip_in_several_chunks(tmp_path, monkeypatch, suffix):
    """Text outputs are read and written a chunk of rows at a time; rows cross chunk borders intact."""
    monkeypatch.setattr(distributed, "ROWS_PER_CHUNK", 3)
    rows = [row(f"/x/{i:02d}.jpg", error="bad" if i % 4 == 0 else None, scores=(i / 10, 0.0)) for i in range(10)]
    path = tmp_path / f"out{suffix}"
    write_results(rows, path)
    table = read_results_table(path)
    assert table.num_rows == 10 and table.to_pylist() == rows
    write_results_table(table, tmp_path / f"again{suffix}")
    assert (tmp_path / f"again{suffix}").read_bytes() == path.read_bytes()


def test_usage_errors_exit_2_before_ray_starts(tmp_path, capsys, monkeypatch):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"x")
    assert predict_with_ray([str(image)], output=None) == 2
    assert "needs --output" in capsys.readouterr().err
    assert predict_with_ray([str(image)], output=tmp_path / "out.xlsx") == 2
    assert "Unsupported output format" in capsys.readouterr().err
    assert predict_with_ray([str(image)], output=tmp_path / "nowhere" / "out.csv") == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert predict_with_ray([str(image)], output=tmp_path / "out.csv") == 2
    assert "pip install 'imgcls[ray]'" in " ".join(capsys.readouterr().err.split())


def test_nothing_found_exits_2(tmp_path, capsys, lite0_fp32):
    (tmp_path / "empty").mkdir()
    code = predict_with_ray([str(tmp_path / "empty")], model="efficientnet_lite0", output=tmp_path / "out.csv")
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "no image files" in err and "No input files found" in err


def test_complete_output_needs_no_cluster(tmp_path, capsys, lite0_fp32):
    """Re-running on a finished output does no work at all (Ray is not even started)."""
    image = tmp_path / "x.jpg"
    image.write_bytes(b"x")
    output = tmp_path / "out.jsonl"
    done = row(str(image), model="efficientnet_lite0", scores=(0.5, 0.2, 0.1, 0.1, 0.1))
    done["top_indices"], done["top_labels"] = [1, 2, 3, 4, 5], ["a", "b", "c", "d", "e"]
    write_results([done, row("/elsewhere.jpg")], output)
    parts_dir(output).mkdir()  # a stale, empty parts folder from a crash is cleaned up
    assert predict_with_ray([str(image)], model="efficientnet_lite0", output=output, lang="zh") == 0
    assert "1 already classified, 0 to classify" in " ".join(capsys.readouterr().err.split())
    rows = read_results(output)
    assert [r["path"] for r in rows] == ["/elsewhere.jpg", str(image)]  # other rows are kept
    assert not parts_dir(output).exists()
    # The kept row now speaks the language asked for; its indices and scores are untouched.
    zh = resolve_model("efficientnet_lite0").labels("zh")
    assert rows[1]["top_labels"] == [zh[i] for i in (1, 2, 3, 4, 5)] and rows[1]["top_scores"] == done["top_scores"]
    assert rows[0]["top_labels"] == row("/elsewhere.jpg")["top_labels"]  # another model's row: as it was


def test_relabel_table_only_touches_valid_rows_of_the_model():
    labels = ("zero", "one", "two")
    ok = {**row("/a", model="m"), "top_indices": [2, 0], "top_labels": ["x", "y"]}
    foreign = {**row("/b", model="m"), "top_indices": [7, 0], "top_labels": ["x", "y"]}  # not this model's classes
    failed = {**row("/c", model="m", error="bad"), "top_indices": [], "top_labels": []}
    other = {**row("/d", model="n"), "top_indices": [1, 2], "top_labels": ["x", "y"]}
    import pyarrow as pa

    table = pa.Table.from_pylist([ok, foreign, failed, other], schema=distributed.result_schema())
    out = relabel_table(table, "m", labels).to_pylist()
    assert [r["top_labels"] for r in out] == [["two", "zero"], ["x", "y"], [], ["x", "y"]]
    assert ok["top_labels"] == ["x", "y"]  # the input rows are not modified
