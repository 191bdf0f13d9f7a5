"""atheris harness for the decode path: untrusted bytes -> decode_image -> preprocess.

Run by tests/fuzz/test_fuzz_decode.py as a subprocess (libFuzzer flags pass straight through):

    python tests/fuzz/fuzz_decode.py CORPUS_DIR -max_total_time=60 -artifact_prefix=OUT/

The contract is fuzz_contract.check_input: an ``ImgclsError`` or a clean RGB result. Any other
exception, a hang (-timeout) or runaway memory (-rss_limit_mb) is a finding.
"""

from __future__ import annotations

import sys
import warnings

import atheris
import numpy  # noqa: F401  (imported first so it is not instrumented: large, not our target)

with atheris.instrument_imports(include=["PIL", "imgcls", "fuzz_contract"]):
    # Pillow loads format plugins lazily, at the first Image.open: import the allowed ones here so
    # they are instrumented too (otherwise the fuzzer is blind to the code that parses headers).
    from PIL import (  # noqa: F401
        BmpImagePlugin, GifImagePlugin, Image, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin, TiffImagePlugin,
        TiffTags, WebPImagePlugin,
    )
    from fuzz_contract import check_input

warnings.simplefilter("ignore")  # Pillow warns about odd metadata; only exceptions matter here


def TestOneInput(data: bytes) -> None:  # noqa: N802  (the name atheris/libFuzzer expects)
    # Odd-length inputs also exercise JPEG draft mode (decoding at reduced scale).
    check_input(data, draft=bool(len(data) % 2))


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
