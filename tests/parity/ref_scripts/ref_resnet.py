"""Parity (a): imgcls ResNet-18 vs torchvision.models.resnet18 with the same random weights.

Run by .venv-ref/bin/python:  ref_resnet.py SRC_DIR DEV_DIR OUT_JSON [N_PHOTOS]

A random state_dict is made in torchvision's model and loaded into ours with strict=True (proving
the parameter names and shapes match), then both run in eval mode on real preprocessed dev photos,
random normal inputs and a non-square input. The reverse direction (ours -> torchvision) is
checked too, so neither side has names the other lacks.
"""

from __future__ import annotations

import sys

from common import dev_photos, randomize_resnet, setup, write_result


def main(src: str, dev_dir: str, out: str, n_photos: int = 24) -> None:
    setup(src)
    import numpy as np
    import torch
    import torchvision

    from imgcls.architectures.resnet import resnet18
    from imgcls.catalog.entries import CATALOG
    from imgcls.preprocess import decode_image, preprocess

    pp = CATALOG["resnet18"].preprocessing
    photos = dev_photos(dev_dir)[:n_photos]
    real = torch.from_numpy(np.stack([preprocess(decode_image(p.read_bytes()).image, pp) for p in photos]))
    generator = torch.Generator().manual_seed(7)
    noise = torch.randn((6, 3, 224, 224), generator=generator)
    odd = torch.randn((2, 3, 320, 256), generator=generator)  # adaptive pooling on a non-square map

    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(weights=None)
    randomize_resnet(theirs, real, seed=1)
    state = theirs.state_dict()
    ours = resnet18()
    load = ours.load_state_dict(state, strict=True)
    ours.eval()

    our_keys, their_keys = list(ours.state_dict()), list(state)
    shapes_equal = all(ours.state_dict()[k].shape == state[k].shape for k in their_keys if k in ours.state_dict())

    diffs, scales, top1 = {}, {}, {}
    with torch.no_grad():
        for label, batch in (("photos", real), ("random_normal", noise), ("non_square_320x256", odd)):
            a, b = ours(batch), theirs(batch)
            diffs[label] = float((a - b).abs().max())
            scales[label] = float(b.abs().max())
            top1[label] = bool((a.argmax(1) == b.argmax(1)).all())
        # torchvision's trunk up to the pooled features (children: conv1 ... avgpool, fc).
        trunk = torch.nn.Sequential(*list(theirs.children())[:-1])
        features_diff = float((ours.features(real) - torch.flatten(trunk(real), 1)).abs().max())

    # Reverse direction: a fresh random net of ours loads into torchvision strictly, same outputs.
    torch.manual_seed(3)
    ours2 = resnet18()
    randomize_resnet(ours2, real, seed=4)
    theirs2 = torchvision.models.resnet18(weights=None)
    theirs2.load_state_dict(ours2.state_dict(), strict=True)
    theirs2.eval()
    with torch.no_grad():
        reverse_diff = float((ours2(real) - theirs2(real)).abs().max())

    write_result(out, {
        "photos": len(photos),
        "keys_identical": set(our_keys) == set(their_keys),
        "key_order_identical": our_keys == their_keys,
        "shapes_identical": shapes_equal,
        "num_keys": len(their_keys),
        "only_in_ours": sorted(set(our_keys) - set(their_keys)),
        "only_in_torchvision": sorted(set(their_keys) - set(our_keys)),
        "strict_load": {"missing": list(load.missing_keys), "unexpected": list(load.unexpected_keys)},
        "max_abs_logit_diff": diffs,
        "max_abs_logit": scales,
        "top1_identical": top1,
        "max_abs_feature_diff": features_diff,
        "reverse_load_max_abs_logit_diff": reverse_diff,
    })


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(a) for a in sys.argv[4:5]))
