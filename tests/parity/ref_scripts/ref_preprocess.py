"""Parity (b): imgcls preprocessing vs torchvision's ResNet18_Weights.IMAGENET1K_V1.transforms().

Run by .venv-ref/bin/python:  ref_preprocess.py SRC_DIR DEV_DIR OUT_JSON

For every dev photo: ours = ``preprocess(decode_image(bytes).image, resnet18 preprocessing)``,
theirs = the real torchvision preset (antialiased bilinear resize of the shorter side to 256,
centre crop 224, pil_to_tensor, convert_image_dtype, normalize) applied to the image the way a
torchvision user opens it, ``Image.open(path).convert("RGB")``. Only when our decoder rotated a
photo per EXIF (torchvision users don't) is our upright image given to torchvision instead, and
that is counted. A few synthetic sizes (upscaling, exact 256, odd sizes, portrait, 8:1 strips)
exercise the rounding of the resize and the crop offsets.
"""

from __future__ import annotations

import sys

from common import dev_photos, setup, write_result


def main(src: str, dev_dir: str, out: str) -> None:
    setup(src)
    import numpy as np
    import torchvision
    from PIL import Image

    from imgcls.catalog.entries import CATALOG
    from imgcls.preprocess import decode_image, preprocess

    pp = CATALOG["resnet18"].preprocessing
    preset = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    preset_repr = " ".join(repr(preset).split())

    per_photo, decode_identical, rotated, conversions = {}, 0, [], {}
    for path in dev_photos(dev_dir):
        decoded = decode_image(path.read_bytes())
        ours = preprocess(decoded.image, pp)
        with Image.open(path) as opened:
            plain = opened.convert("RGB")
        if decoded.report.conversions:
            conversions[path.name] = decoded.report.conversions
        if any("EXIF" in c for c in decoded.report.conversions):
            rotated.append(path.name)
            plain = decoded.image
        decode_identical += int(np.array_equal(np.asarray(plain), np.asarray(decoded.image)))
        theirs = preset(plain).numpy()
        assert theirs.shape == ours.shape == (3, 224, 224), (theirs.shape, ours.shape)
        assert theirs.dtype == ours.dtype
        per_photo[path.name] = float(np.abs(ours - theirs).max())

    synthetic = {}
    rng = np.random.default_rng(0)
    for width, height in ((100, 80), (224, 224), (256, 256), (257, 301), (640, 480), (480, 640),
                          (333, 500), (1999, 250), (250, 1999)):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
        synthetic[f"{width}x{height}"] = float(np.abs(preprocess(image, pp) - preset(image).numpy()).max())

    worst = max(per_photo, key=per_photo.get)
    values = np.asarray(list(per_photo.values()))
    import PIL

    write_result(out, {
        "preset": preset_repr,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "photos": len(per_photo),
        "max_abs_diff": float(values.max()),
        "mean_of_per_photo_max": float(values.mean()),
        "photos_bit_identical": int((values == 0).sum()),
        "photos_over_1e-6": int((values > 1e-6).sum()),
        "worst_photo": worst,
        "decode_identical_to_plain_pillow": decode_identical,
        "exif_rotated": rotated,
        "conversions": conversions,
        "synthetic_max_abs_diff": synthetic,
    })


if __name__ == "__main__":
    main(*sys.argv[1:4])
