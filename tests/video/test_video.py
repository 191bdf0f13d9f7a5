"""`imgcls video` and `imgcls.video` on videos generated from the shared dev photos.

The three-segment video shows gondola (0-5 s), black grouse (5-9 s) and head cabbage (9-15 s),
each a still photo panned a few pixels, so every segment's label and boundaries are known.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from imgcls.video import Sample, analyse_video, classify_frames, format_time, merge_segments, probe, sample_frames

av = pytest.importorskip("av", reason="PyAV not installed (pip install 'imgcls[video]')")

# Dev photos the embedded model (efficientnet_lite0) gets right with > 99% confidence, all 4:3.
SEGMENT_PHOTOS = (
    ("n03447447_gondola.JPEG", 576),
    ("n01795545_black_grouse.JPEG", 80),
    ("n07714571_head_cabbage.JPEG", 936),
)
SEGMENT_SECONDS = (5.0, 4.0, 6.0)  # boundaries at 5 s and 9 s, end at 15 s
EXPECTED = [index for _, index in SEGMENT_PHOTOS]
BOUNDARIES = [0.0, SEGMENT_SECONDS[0], SEGMENT_SECONDS[0] + SEGMENT_SECONDS[1]]  # 0, 5, 9
DURATION = sum(SEGMENT_SECONDS)


@pytest.fixture(scope="module")
def segment_images(dev_dir):
    from PIL import Image

    return [Image.open(dev_dir / name).convert("RGB") for name, _ in SEGMENT_PHOTOS]


@pytest.fixture(scope="module")
def three_segment_video(tmp_path_factory, segment_images, make_video):
    """15 s, 10 fps: gondola 0-5 s, black grouse 5-9 s, head cabbage 9-15 s; a keyframe every second."""
    path = tmp_path_factory.mktemp("video") / "three.mp4"
    return make_video(path, list(zip(segment_images, SEGMENT_SECONDS)), fps=10, gop=10)


def assert_segments(timeline, interval: float) -> None:
    assert [s.class_index for s in timeline.segments] == EXPECTED, [s.describe() for s in timeline.segments]
    for segment, boundary in zip(timeline.segments, BOUNDARIES):
        assert abs(segment.start - boundary) <= interval + 1e-6, (segment.describe(), boundary)
    for before, after in zip(timeline.segments, timeline.segments[1:]):
        assert before.end == pytest.approx(after.start)
    assert timeline.segments[-1].end == pytest.approx(DURATION, abs=0.2)
    assert all(s.mean_score > 0.8 for s in timeline.segments)


@pytest.mark.parametrize("fps", [1.0, 2.0, 0.5])
def test_fps_sampling_finds_the_three_segments(three_segment_video, classifier, fps):
    timeline = analyse_video(three_segment_video, classifier, fps=fps, top_k=3)
    interval = 1.0 / fps
    times = [s.time for s in timeline.samples]
    assert len(times) == math.ceil(DURATION * fps)  # last frame at 14.9 s
    # Samples are the first frames at or after each multiple of the interval (10 fps source).
    assert times == pytest.approx([i * interval for i in range(len(times))], abs=0.1 + 1e-6)
    assert all(len(s.top) == 3 for s in timeline.samples)
    assert_segments(timeline, interval)
    assert timeline.warnings == []


def test_keyframe_sampling_decodes_only_keyframes(three_segment_video, classifier):
    # The video has a keyframe every second (gop 10 at 10 fps); every 2nd one -> a sample per 2 s.
    timeline = analyse_video(three_segment_video, classifier, keyframes_every=2)
    assert [s.time for s in timeline.samples] == pytest.approx([0, 2, 4, 6, 8, 10, 12, 14])
    assert timeline.sampling == {"mode": "keyframes", "every": 2}
    assert_segments(timeline, 2.0)


def test_classify_frames_is_the_engine_path(three_segment_video, classifier):
    """classify_frames on PyAV frames == Classifier.predict on the same frames as PIL images."""
    container = av.open(str(three_segment_video))
    frames = [frame for i, frame in zip(range(60), container.decode(video=0)) if i % 20 == 0]
    images = [frame.to_image() for frame in frames]
    container.close()
    from_frames = classify_frames(classifier, frames, top_k=5)
    from_engine = [p.top for p in classifier.predict(images, top_k=5)]
    assert [[t["class_index"] for t in top] for top in from_frames] == [[t["class_index"] for t in top] for top in from_engine]
    for a, b in zip(from_frames, from_engine):
        np.testing.assert_allclose([t["score"] for t in a], [t["score"] for t in b], atol=1e-5)
    assert classify_frames(classifier, []) == []
    # Camera frames arrive as PIL images, possibly not RGB.
    assert classify_frames(classifier, [images[0].convert("RGBA")])[0][0]["class_index"] == EXPECTED[0]


def test_zh_labels(three_segment_video, classifier):
    timeline = analyse_video(three_segment_video, classifier, fps=1.0, lang="zh")
    assert timeline.segments[0].label == classifier.labels("zh")[EXPECTED[0]]
    assert timeline.segments[0].label != classifier.labels("en")[EXPECTED[0]]


def _sample(time: float, *pairs: tuple[int, float]) -> Sample:
    return Sample(time, [{"class_index": i, "label": f"c{i}", "score": s} for i, s in pairs])


def test_merge_segments_and_min_segment():
    samples = [_sample(0, (1, 0.9)), _sample(1, (1, 0.7), (2, 0.2)), _sample(2, (2, 0.6), (1, 0.3)),
               _sample(3, (1, 0.8)), _sample(4, (3, 0.9)), _sample(5, (3, 0.5), (1, 0.1))]
    plain = merge_segments(samples, end_time=6.0)
    assert [(s.start, s.end, s.class_index, s.samples) for s in plain] == [
        (0, 2, 1, 2), (2, 3, 2, 1), (3, 4, 1, 1), (4, 6, 3, 2)]
    assert plain[0].mean_score == pytest.approx(0.8)
    assert plain[0].describe() == "00:00–00:02 c1"
    # The 1-s flicker of class 2 is absorbed; both neighbours are class 1, so all three merge.
    smooth = merge_segments(samples, end_time=6.0, min_segment=1.5)
    assert [(s.start, s.end, s.class_index, s.samples) for s in smooth] == [(0, 4, 1, 4), (4, 6, 3, 2)]
    # Mean score of the label over the merged samples (0.3 is class 1's score in the flicker).
    assert smooth[0].mean_score == pytest.approx((0.9 + 0.7 + 0.3 + 0.8) / 4)
    assert merge_segments([]) == []
    assert len(merge_segments(samples, end_time=6.0, min_segment=100)) == 1


def test_format_time():
    assert format_time(0) == "00:00"
    assert format_time(12.9) == "00:12"
    assert format_time(31) == "00:31"
    assert format_time(3600 + 62) == "1:01:02"


# --- the command line --------------------------------------------------------------------------
def run_cli(*args: str):
    from imgcls.cli import app

    return CliRunner().invoke(app, ["video", *args, "--model", "efficientnet_lite0"])


def test_cli_json_timeline_and_segments(three_segment_video, tmp_path, lite0_fp32):
    out = tmp_path / "timeline.json"
    result = run_cli(str(three_segment_video), "--fps", "2", "--top-k", "2", "--output", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data["timeline"]) == 30 and data["timeline"][1]["time"] == pytest.approx(0.5)
    assert all(len(entry["top"]) == 2 for entry in data["timeline"])
    assert [s["class_index"] for s in data["segments"]] == EXPECTED
    assert data["segments"][1]["start_text"] == "00:05" and data["video"]["duration"] == pytest.approx(DURATION)
    assert "00:05–00:09 black grouse" in result.output  # segments printed for the reader


def test_cli_csv_to_stdout(three_segment_video, lite0_fp32):
    result = run_cli(str(three_segment_video), "--format", "csv", "--top-k", "3")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line and line[0].isdigit()]
    assert result.stdout.startswith("time,rank,class_index,label,score")
    assert len(lines) == 15 * 3
    time_, rank, index, label, score = lines[0].split(",")
    assert (time_, rank, int(index), label) == ("0.000", "1", EXPECTED[0], "gondola") and float(score) > 0.9


def test_cli_table_and_min_segment(three_segment_video, lite0_fp32):
    result = run_cli(str(three_segment_video), "--min-segment", "5")
    assert result.exit_code == 0, result.output
    # The 4-s black grouse segment is shorter than 5 s: absorbed into the longer neighbour.
    assert "gondola" in result.stdout and "head cabbage" in result.stdout and "black grouse" not in result.stdout


def test_cli_rejects_both_sampling_modes(three_segment_video):
    result = run_cli(str(three_segment_video), "--fps", "1", "--keyframes-every", "2")
    assert result.exit_code == 2 and "either --fps or --keyframes-every" in result.output


# --- bad files: exit 2, one clear line, no traceback ---------------------------------------------
def _encode_frames(path, frames: int, codec: str = "mpeg4", container_format: str | None = None):
    container = av.open(str(path), mode="w", format=container_format)
    stream = container.add_stream(codec, rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()  # writes the header even when no frame follows
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10 % 255, np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def _bad_files(tmp_path, dev_dir, three_segment_video):
    files = {}
    files["missing.mp4"] = (tmp_path / "missing.mp4", "No such file")
    files["folder"] = (tmp_path, "is a folder")
    (tmp_path / "empty.mp4").write_bytes(b"")
    files["empty.mp4"] = (tmp_path / "empty.mp4", "is empty")
    (tmp_path / "notes.mp4").write_text("these are my holiday notes, not a video\n")
    files["text"] = (tmp_path / "notes.mp4", "not a video (it contains text)")
    (tmp_path / "photo.mp4").write_bytes((dev_dir / SEGMENT_PHOTOS[0][0]).read_bytes())
    files["jpeg"] = (tmp_path / "photo.mp4", "is a JPEG image, not a video")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    files["noise"] = (tmp_path / "noise.mp4", "not a readable video")
    data = three_segment_video.read_bytes()  # MP4 with its index (moov) at the end: cut -> unreadable
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    files["truncated mp4"] = (tmp_path / "truncated.mp4", "corrupt, truncated or not a video")
    files["zero frames"] = (_encode_frames(tmp_path / "zero.avi", 0, container_format="avi"), "zero-length video")
    audio = av.open(str(tmp_path / "audio.wav"), mode="w")
    stream = audio.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    for packet in list(stream.encode(frame)) + list(stream.encode()):
        audio.mux(packet)
    audio.close()
    files["audio only"] = (tmp_path / "audio.wav", "has no video stream")
    # An AVI whose codec tag no decoder knows: MPEG-4 data relabelled with a made-up FourCC.
    raw = _encode_frames(tmp_path / "raw.avi", 10, container_format="avi").read_bytes()
    (tmp_path / "unknown.avi").write_bytes(raw.replace(b"FMP4", b"QQZ9"))
    files["unknown codec"] = (tmp_path / "unknown.avi", "codec")
    if hasattr(os, "mkfifo"):  # opening a named pipe would wait for a writer forever
        os.mkfifo(tmp_path / "pipe.mp4")
        files["named pipe"] = (tmp_path / "pipe.mp4", "not a regular file")
    return files


def test_bad_files_exit_2_with_a_clear_message(tmp_path, dev_dir, three_segment_video, lite0_fp32):
    for name, (path, expected) in _bad_files(tmp_path, dev_dir, three_segment_video).items():
        result = run_cli(str(path))
        assert result.exit_code == 2, (name, result.output)
        assert isinstance(result.exception, SystemExit), (name, result.exception)
        message = " ".join(result.output.split())
        assert message.startswith("Error:"), (name, message)
        assert expected in message, (name, message)
        assert "Traceback" not in result.output


def test_probe_raises_input_errors(tmp_path, dev_dir, three_segment_video):
    from imgcls.errors import InputError

    for name, (path, _) in _bad_files(tmp_path, dev_dir, three_segment_video).items():
        if name == "zero frames":
            with pytest.raises(InputError):
                list(sample_frames(path))
            continue
        with pytest.raises(InputError):
            probe(path)
    info = probe(three_segment_video)
    assert (info.width, info.height, info.frames) == (320, 240, 150) and info.duration == pytest.approx(DURATION)


def test_truncated_matroska_gives_the_readable_part_and_exit_1(tmp_path, segment_images, make_video, lite0_fp32):
    data = make_video(tmp_path / "full.mkv", list(zip(segment_images, SEGMENT_SECONDS)), fps=10, gop=10).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    result = run_cli(str(cut), "--format", "json")
    assert result.exit_code == 1, result.output
    assert "looks truncated" in " ".join(result.stderr.split())
    payload = json.loads(result.stdout)
    assert [s["class_index"] for s in payload["segments"]][:1] == EXPECTED[:1]
    assert payload["warnings"] and payload["segments"][-1]["end"] < DURATION - 2


def test_real_process_corrupt_video_no_traceback(tmp_path):
    """The installed entry point, in its own process: exit 2 and one line, never a traceback."""
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    proc = subprocess.run([sys.executable, "-m", "imgcls", "video", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Error:" in proc.stderr
    assert "broken.mp4" in proc.stderr


def test_animated_gif_is_a_short_video(tmp_path, segment_images, classifier):
    """FFmpeg plays an animated GIF as a video; a still PNG/JPEG is refused (see the bad files)."""
    frames = [image.resize((160, 120)) for image in segment_images]
    gif = tmp_path / "slides.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=2000, loop=0)
    timeline = analyse_video(gif, classifier, fps=1.0)
    assert [s.time for s in timeline.samples] == pytest.approx([0, 2, 4])  # one frame per 2 s slide
    assert timeline.info.container == "gif"
