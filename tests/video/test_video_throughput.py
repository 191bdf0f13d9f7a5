"""Frames/s classified on a generated 60-second, 30 fps clip at --fps 1 and --fps 5 (slow: ~1 min).

The figures go to test-artifacts/video_throughput.json for the README / issue report.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from imgcls.video import analyse_video, probe

PHOTOS = (("n03447447_gondola.JPEG", 576), ("n01795545_black_grouse.JPEG", 80),
          ("n07714571_head_cabbage.JPEG", 936), ("n02361337_marmot.JPEG", 336))


@pytest.mark.slow
def test_sixty_second_clip_throughput(tmp_path, dev_dir, make_video, classifier, artifacts_dir):
    from PIL import Image

    clips = [(Image.open(dev_dir / name).convert("RGB"), 15.0) for name, _ in PHOTOS]
    started = time.perf_counter()
    video = make_video(tmp_path / "sixty.mp4", clips, fps=30, size=(640, 360), gop=60, pan=40)
    encode_s = time.perf_counter() - started
    figures = {"clip": f"60 s, 30 fps, 640x360, {probe(video).codec}",
               "model": classifier.name, "precision": classifier.precision, "batch_size": classifier.batch_size,
               "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1),
               "encode_s": round(encode_s, 1), "runs": []}
    for fps in (1.0, 5.0):
        timeline = analyse_video(video, classifier, fps=fps)
        assert len(timeline.samples) == int(60 * fps)
        assert [s.class_index for s in timeline.segments] == [index for _, index in PHOTOS]
        figures["runs"].append({"fps": fps, "samples": len(timeline.samples), "seconds": round(timeline.seconds, 2),
                                "frames_per_second": round(timeline.samples_per_second, 2),
                                "video_seconds_per_second": round(60 / timeline.seconds, 2)})
    timeline = analyse_video(video, classifier, keyframes_every=1)
    assert len(timeline.samples) == 30  # a keyframe every 2 s
    figures["runs"].append({"keyframes_every": 1, "samples": len(timeline.samples),
                            "seconds": round(timeline.seconds, 2),
                            "frames_per_second": round(timeline.samples_per_second, 2),
                            "video_seconds_per_second": round(60 / timeline.seconds, 2)})
    (artifacts_dir / "video_throughput.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
