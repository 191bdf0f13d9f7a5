"""The Ray driver's own cost at the end of a big job: merging N result rows from part files.

    .venv/bin/python scripts/bench-ray-merge.py [ROWS]        # default 1,000,000

Writes N synthetic top-5 rows as 100,000-row part files (what the inference actors stream back),
then, each in a fresh process so that peak RSS is its own: the final merge + relabel + Parquet
write, and the resume check of a finished output against the same N files. Prints seconds and
peak RSS. Needs the ray extra (pyarrow); no cluster is started.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PART_ROWS = 100_000
MODEL = "efficientnet_lite0"


def generate(rows: int, folder: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from imgcls.distributed import result_schema

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for start in range(0, rows, PART_ROWS):
        n = min(PART_ROWS, rows - start)
        offsets = pa.array(np.arange(0, 5 * n + 1, 5, dtype=np.int32))
        indices = rng.integers(0, 1000, size=5 * n)
        table = pa.table({
            "path": [f"/archive/{(start + i) // 1000:05d}/IMG_{start + i:08d}.jpg" for i in range(n)],
            "model": [MODEL] * n,
            "top_indices": pa.ListArray.from_arrays(offsets, pa.array(indices, pa.int64())),
            "top_labels": pa.ListArray.from_arrays(offsets, pa.array([f"class {i}" for i in indices])),
            "top_scores": pa.ListArray.from_arrays(offsets, pa.array(rng.random(5 * n))),
            "error": pa.nulls(n, pa.string()),
        }, schema=result_schema())
        pq.write_table(table, folder / f"part-0-{start // PART_ROWS:06d}.parquet")


def final_merge(folder: Path, output: Path) -> str:
    from imgcls.catalog import resolve_model
    from imgcls.distributed import _read_parts, merge_tables, relabel_table, write_results_table

    labels = resolve_model(MODEL).labels("en")
    final = relabel_table(merge_tables(_read_parts(folder)), MODEL, labels)
    write_results_table(final, output)
    return f"final merge + relabel + write of {final.num_rows:,} rows"


def resume_check(output: Path) -> str:
    import pyarrow.parquet as pq

    from imgcls.distributed import _pending, merge_tables, read_results_table

    files = pq.read_table(output, columns=["path"])["path"].to_pylist()  # stands in for the listing
    pending = _pending(files, merge_tables(read_results_table(output)), MODEL, 5, 1000)
    return f"resume check of {len(files):,} files ({len(pending):,} left to do)"


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--step":  # one measured step, in its own process
        step, args = sys.argv[2], [Path(a) for a in sys.argv[3:]]
        started = time.perf_counter()
        what = final_merge(*args) if step == "final" else resume_check(*args)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{what}: {time.perf_counter() - started:.1f} s, peak RSS {peak_mb:.0f} MB", flush=True)
        return
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        parts, output = Path(tmp) / "out.parquet.parts", Path(tmp) / "out.parquet"
        generate(rows, parts)
        for step, args in (("final", [parts, output]), ("resume", [output])):
            subprocess.run([sys.executable, __file__, "--step", step, *map(str, args)], check=True)


if __name__ == "__main__":
    main()
