"""Coverage-guided fuzzing of decode_image + preprocess under atheris, for a bounded time.

The harness (fuzz_decode.py) runs as a subprocess seeded with small valid JPEG/PNG/GIF/WebP/BMP/
TIFF/JPEG 2000 files generated here. Anything but an ``ImgclsError`` (or a clean RGB result) is a finding:
libFuzzer stops, writes the input to test-artifacts/fuzz-findings/, and this test fails with the
harness's traceback. Each finding, once fixed in preprocess.py, is kept as a file in
tests/fuzz/regressions/ and replayed by test_regressions on every run (no fuzzer needed).

IMGCLS_FUZZ_SECONDS sets the budget (default 60).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from fuzz_contract import check_input
from fuzz_seeds import seed_files, write_seeds

HARNESS = Path(__file__).resolve().parent / "fuzz_decode.py"
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
FUZZ_SECONDS = int(os.environ.get("IMGCLS_FUZZ_SECONDS", "60"))


@pytest.mark.fuzz
@pytest.mark.timeout(FUZZ_SECONDS + 300)
def test_decode_path_survives_coverage_guided_fuzzing(tmp_path, artifacts_dir):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    seeds = write_seeds(corpus)
    for path in sorted(REGRESSIONS.glob("*.bin")):  # past findings seed the search too
        (corpus / path.name).write_bytes(path.read_bytes())
    findings = artifacts_dir / "fuzz-findings"
    findings.mkdir(parents=True, exist_ok=True)
    before = set(findings.iterdir())
    command = [sys.executable, str(HARNESS), str(corpus), f"-max_total_time={FUZZ_SECONDS}", "-timeout=20",
               "-rss_limit_mb=3072", "-max_len=16384", "-len_control=20", "-print_final_stats=1",
               f"-artifact_prefix={findings}/"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=FUZZ_SECONDS + 240, cwd=tmp_path)
    log = done.stdout + done.stderr
    (artifacts_dir / "fuzz-decode.log").write_text(log[-200_000:])
    runs = re.search(r"Done (\d+) runs in (\d+) second", log)
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", log)
    stats = {
        "seconds_budget": FUZZ_SECONDS,
        "runs": int(runs.group(1)) if runs else None,
        "seconds": int(runs.group(2)) if runs else None,
        "coverage_edges": int(coverage[-1][0]) if coverage else None,
        "features": int(coverage[-1][1]) if coverage else None,
        "seeds": len(seeds),
        "corpus_after": len(list(corpus.iterdir())),
        "exit_code": done.returncode,
        "new_findings": sorted(p.name for p in set(findings.iterdir()) - before),
    }
    (artifacts_dir / "fuzz-decode.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats))
    problem = re.search(r"(=== Uncaught Python exception: ===.*?)(?:\n\n|MS:|$)", log, re.S)
    assert done.returncode == 0 and not stats["new_findings"], (
        f"fuzzing found a problem (inputs in {findings}):\n{problem.group(1) if problem else log[-4000:]}")
    assert stats["runs"] and stats["runs"] > 500, stats  # it really ran


REGRESSION_FILES = sorted(REGRESSIONS.glob("*.bin"))


@pytest.mark.parametrize("path", REGRESSION_FILES or [None], ids=lambda p: p.name if p else "none-yet")
def test_regressions(path):
    """Inputs that once broke the decode path (found by the fuzzer, fixed in preprocess.py)."""
    if path is None:
        pytest.skip("no fuzzing finding recorded yet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for draft in (False, True):
            check_input(path.read_bytes(), draft=draft)


def test_seed_corpus_decodes_cleanly():
    """Every seed is a valid image the decoder accepts (a broken seed would waste the fuzzer's time)."""
    for name, data in seed_files().items():
        assert check_input(data) == "ok", name
