"""Video timelines: sample frames with PyAV, classify them with the engine's stages, merge segments.

    file -> probe (clear errors for missing / not a video / corrupt / unsupported codec / empty)
         -> sample_frames: one frame per 1/fps seconds of presentation time (decoded in order,
            no seeking: the first frame whose timestamp reaches each sample time), or every N-th
            keyframe (the decoder skips non-key frames entirely)
         -> classify_frames: Classifier.to_array -> Classifier.probabilities -> format_top, the
            same stages the HTTP server runs; the server's camera mode calls it too
         -> merge_segments: consecutive samples with the same top-1 become one segment,
            "00:12–00:31 golden retriever", with the mean score of that label over the segment.

PyAV is optional (``pip install 'imgcls[video]'``); it is imported inside the functions that use it.
"""

from __future__ import annotations

import math
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from imgcls.errors import EmptyFileError, InputError, UnsupportedMediaError

__all__ = [
    "VIDEO_MISSING",
    "Sample",
    "Segment",
    "Timeline",
    "VideoInfo",
    "analyse_video",
    "classify_frames",
    "format_time",
    "merge_segments",
    "probe",
    "sample_frames",
]

VIDEO_MISSING = "Video support needs PyAV. Install the extra: pip install 'imgcls[video]'"
# FFmpeg demuxers that read still images: a JPEG "opens" as a one-frame video, which is not one.
# (Animated GIFs are let through: FFmpeg's gif demuxer plays them as the short videos they are.)
_IMAGE_DEMUXERS = ("image2", "_pipe")


@dataclass
class VideoInfo:
    """What the container says about the video stream."""

    path: str
    container: str
    codec: str
    width: int
    height: int
    duration: float | None  # seconds, when the container knows it
    frame_rate: float | None
    frames: int | None  # as declared by the container (0 when unknown)

    def to_dict(self) -> dict:
        return {"container": self.container, "codec": self.codec, "width": self.width, "height": self.height,
                "duration": self.duration, "frame_rate": self.frame_rate, "frames": self.frames}


@dataclass
class Sample:
    """One classified frame: its time from the start of the video and the top-k answers."""

    time: float
    top: list[dict]

    def to_dict(self) -> dict:
        return {"time": round(self.time, 3), "top": self.top}


@dataclass
class Segment:
    """A run of samples sharing one label; ``end`` is where the next segment (or the video) starts."""

    start: float
    end: float
    class_index: int
    label: str
    mean_score: float
    samples: int

    def describe(self) -> str:
        return f"{format_time(self.start)}–{format_time(self.end)} {self.label}"

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "start_text": format_time(self.start),
                "end_text": format_time(self.end), "class_index": self.class_index, "label": self.label,
                "mean_score": round(self.mean_score, 6), "samples": self.samples}


@dataclass
class Timeline:
    """The whole answer for one video."""

    path: str
    model: str
    precision: str
    info: VideoInfo
    sampling: dict
    samples: list[Sample]
    segments: list[Segment]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time spent decoding + classifying

    @property
    def samples_per_second(self) -> float:
        return len(self.samples) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "file": self.path, "model": self.model, "precision": self.precision, "video": self.info.to_dict(),
            "sampling": self.sampling, "timeline": [s.to_dict() for s in self.samples],
            "segments": [s.to_dict() for s in self.segments], "warnings": list(self.warnings),
            "elapsed_s": round(self.seconds, 3), "samples_per_second": round(self.samples_per_second, 2),
        }


def format_time(seconds: float) -> str:
    """``MM:SS``, or ``H:MM:SS`` from one hour on (whole seconds, rounded down)."""
    whole = max(0, int(math.floor(seconds + 1e-6)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


# --- opening and checking ------------------------------------------------------------------------
def _import_av():
    try:
        import av
    except ImportError:
        raise InputError(VIDEO_MISSING) from None
    return av


def _open(path: Path):
    """Open a container or raise an InputError that says what is wrong with the file."""
    av = _import_av()
    try:
        info = path.stat()  # one look at what the path is, before anything opens it
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{path.name} is a folder, not a video file.")
        if not stat.S_ISREG(info.st_mode):  # opening a named pipe would wait for a writer forever
            raise InputError(f"{path.name} is not a regular file (a pipe, socket or device); give a video file.")
        size = info.st_size
        with path.open("rb") as handle:
            head = handle.read(64)
    except FileNotFoundError:
        raise InputError(f"No such file: {path.name}") from None
    except OSError as exc:
        raise InputError(f"Could not read {path.name} ({exc.strerror or exc.__class__.__name__}).") from None
    if size == 0:
        raise EmptyFileError(f"{path.name} is empty.")
    _refuse_images_and_text(path, head)
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"{path.name} is not a readable video: it is corrupt, truncated or not a video file "
                         f"(FFmpeg: {reason}).") from None
    if any(part in container.format.name for part in _IMAGE_DEMUXERS):
        container.close()
        raise UnsupportedMediaError(f"{path.name} is a still image, not a video; classify it with `imgcls predict`.")
    return container


def _refuse_images_and_text(path: Path, head: bytes) -> None:
    from imgcls.preprocess import sniff_format

    try:
        fmt = sniff_format(head)
    except UnsupportedMediaError as exc:
        if "detected: text" in exc.message or "HTML" in exc.message or "SVG" in exc.message:
            raise UnsupportedMediaError(f"{path.name} is not a video (it contains text).") from None
        return  # not an image we know: let FFmpeg decide
    if fmt != "GIF":
        raise UnsupportedMediaError(f"{path.name} is a {fmt} image, not a video; classify it with `imgcls predict`.")


def _video_stream(container, name: str):
    if not container.streams.video:
        raise UnsupportedMediaError(f"{name} has no video stream (audio only or data).")
    stream = container.streams.video[0]
    context = stream.codec_context
    if context is None or context.codec is None or not getattr(context.codec, "is_decoder", True):
        codec = getattr(getattr(stream, "codec_context", None), "name", None) or "unknown"
        raise UnsupportedMediaError(f"{name} uses a video codec ({codec}) this FFmpeg build cannot decode.")
    return stream


def probe(path: str | Path) -> VideoInfo:
    """Describe the video stream of ``path``, raising a clear InputError if it is not a usable video.

    Raises:
        InputError: missing file, folder, still image, text, corrupt or truncated container.
        EmptyFileError: a zero-byte file.
        UnsupportedMediaError: no video stream, or a codec FFmpeg cannot decode.
    """
    path = Path(path)
    container = _open(path)
    try:
        return _info(path, container, _video_stream(container, path.name))
    finally:
        container.close()


def _info(path: Path, container, stream) -> VideoInfo:
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(path=str(path), container=container.format.name, codec=stream.codec_context.name,
                     width=stream.codec_context.width, height=stream.codec_context.height, duration=duration,
                     frame_rate=float(rate) if rate else None, frames=int(stream.frames or 0))


# --- sampling ------------------------------------------------------------------------------------
def sample_frames(path: str | Path, fps: float | None = 1.0, keyframes_every: int | None = None,
                  report: dict | None = None) -> Iterator[tuple[float, Image.Image]]:
    """Yield ``(seconds from the start, RGB PIL frame)`` for the sampled frames, in order.

    Args:
        fps: samples per second of video time (ignored when ``keyframes_every`` is given).
        keyframes_every: take every N-th keyframe instead; non-key frames are never decoded.
        report: if given, filled with ``decoded`` (frames decoded), ``end`` (time of the last one)
            and ``warnings``: a decoding failure after some frames, or a stream that stops well
            before the duration its header declares, is reported there and the iteration ends
            normally (a truncated download still gives its readable part). Without a report,
            or without any frame, a decoding failure is raised.

    Raises:
        the errors of `probe`, and InputError when no frame at all can be decoded.
    """
    av = _import_av()
    path = Path(path)
    container = _open(path)
    try:
        stream = _video_stream(container, path.name)
        declared = _info(path, container, stream).duration
        tolerant = report is not None
        report = report if tolerant else {}
        report.setdefault("warnings", [])
        if keyframes_every:
            stream.codec_context.skip_frame = "NONKEY"
        else:
            stream.thread_type = "AUTO"  # frame threads: decoding every frame is the cost in fps mode
        interval = 1.0 / fps if (fps and not keyframes_every) else 0.0
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else None
        next_time, decoded, keyframe_count, yielded, t = 0.0, 0, 0, 0, 0.0
        try:
            for frame in container.decode(stream):
                decoded += 1
                when = frame.time if frame.time is not None else (decoded - 1) / rate
                if origin is None:
                    origin = when
                t = max(0.0, when - origin)
                report["decoded"], report["end"] = decoded, t
                if keyframes_every:
                    keyframe_count += 1
                    if (keyframe_count - 1) % keyframes_every:
                        continue
                elif t + 1e-6 < next_time:
                    continue
                else:
                    # The next sample time after this frame (never twice the same frame, and a
                    # sparse source simply gives fewer samples rather than duplicates).
                    next_time = (math.floor(t / interval + 1e-6) + 1) * interval
                yielded += 1
                yield t, frame.to_image()
        except av.error.FFmpegError as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            if yielded and tolerant:
                report["warnings"].append(f"The video is corrupt or truncated after {format_time(t)}; "
                                          f"the timeline covers only the readable part (FFmpeg: {reason}).")
                return
            detail = f"decoding failed after {format_time(t)}" if yielded else "no frame could be decoded"
            raise InputError(f"{path.name} is corrupt or truncated: {detail} (FFmpeg: {reason}).") from None
        if not decoded:
            raise InputError(f"{path.name} has no frames (zero-length video).")
        # Matroska/WebM cut short simply ends early: compare with the duration in the header.
        frame_time = 1.0 / rate
        if declared and t + frame_time < declared - max(1.0, 2 * frame_time) and not keyframes_every:
            report["warnings"].append(f"The video stops at {format_time(t)} although its header says "
                                      f"{format_time(declared)}: it looks truncated; the timeline covers "
                                      "only the readable part.")
    finally:
        container.close()


# --- classification ------------------------------------------------------------------------------
def classify_frames(classifier, frames: Sequence, top_k: int = 5, lang: str = "en") -> list[list[dict]]:
    """Classify video or camera frames as one batch through the engine's stages.

    Args:
        classifier: an `imgcls.engine.Classifier`.
        frames: PIL images or PyAV ``VideoFrame`` objects (anything with ``to_image()``).
        top_k / lang: as for `Classifier.format_top`.

    Returns:
        One top-k list per frame, best first: ``[{"class_index", "label", "score"}, ...]``.
    """
    if not frames:
        return []
    arrays = []
    for frame in frames:
        image = frame.to_image() if hasattr(frame, "to_image") else frame
        arrays.append(classifier.to_array(image if image.mode == "RGB" else image.convert("RGB")))
    probabilities = classifier.probabilities(np.stack(arrays))
    return [classifier.format_top(p, top_k, lang) for p in probabilities]


def merge_segments(samples: Sequence[Sample], end_time: float | None = None, min_segment: float = 0.0) -> list[Segment]:
    """Merge consecutive samples with the same top-1 into segments.

    Args:
        samples: the timeline, in time order.
        end_time: where the last segment ends (the video's duration); default: the last sample.
        min_segment: segments shorter than this many seconds are absorbed by a neighbour (the
            longer one, or both when they share a label), which removes one-sample flickers.

    Returns:
        Segments covering the timeline; each one's ``mean_score`` is the mean score of its label
        over its samples (0 for a sample whose top-k does not contain the label).
    """
    if not samples:
        return []
    end = max(end_time or 0.0, samples[-1].time)
    runs: list[list[int]] = []  # [first sample, last sample + 1, class_index]
    for i, sample in enumerate(samples):
        index = sample.top[0]["class_index"]
        if runs and runs[-1][2] == index:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, index])

    def length(r: int) -> float:
        stop = samples[runs[r + 1][0]].time if r + 1 < len(runs) else end
        return stop - samples[runs[r][0]].time

    while min_segment > 0 and len(runs) > 1:
        shortest = min(range(len(runs)), key=length)
        if length(shortest) >= min_segment:
            break
        before = shortest - 1 if shortest > 0 else None
        after = shortest + 1 if shortest + 1 < len(runs) else None
        if before is not None and after is not None and runs[before][2] == runs[after][2]:
            runs[before][1] = runs[after][1]
            del runs[shortest:after + 1]
        elif after is None or (before is not None and length(before) >= length(after)):
            runs[before][1] = runs[shortest][1]
            del runs[shortest]
        else:
            runs[after][0] = runs[shortest][0]
            del runs[shortest]

    segments = []
    for r, (first, stop, index) in enumerate(runs):
        scores = [next((t["score"] for t in s.top if t["class_index"] == index), 0.0) for s in samples[first:stop]]
        label = next(t["label"] for s in samples[first:stop] for t in s.top if t["class_index"] == index)
        segments.append(Segment(start=samples[first].time, end=samples[first].time + length(r), class_index=index,
                                label=label, mean_score=float(np.mean(scores)), samples=stop - first))
    return segments


def analyse_video(path: str | Path, classifier, *, fps: float | None = 1.0, keyframes_every: int | None = None,
                  top_k: int = 5, lang: str = "en", min_segment: float = 0.0,
                  on_progress: Callable[[float], None] | None = None) -> Timeline:
    """Sample, classify (in batches of ``classifier.batch_size``) and merge one video.

    Args:
        on_progress: called after each batch with the video time reached, in seconds.

    Raises:
        the errors of `probe` / `sample_frames`.
    """
    path = Path(path)
    info = probe(path)
    warnings: list[str] = []
    samples: list[Sample] = []
    started = time.perf_counter()
    times: list[float] = []
    frames: list[Image.Image] = []

    def flush() -> None:
        for when, top in zip(times, classify_frames(classifier, frames, top_k, lang)):
            samples.append(Sample(when, top))
        if on_progress and times:
            on_progress(times[-1])
        times.clear()
        frames.clear()

    report: dict = {"warnings": warnings}
    for when, image in sample_frames(path, fps=fps, keyframes_every=keyframes_every, report=report):
        times.append(when)
        frames.append(image)
        if len(frames) >= classifier.batch_size:
            flush()
    flush()
    seconds = time.perf_counter() - started
    # A truncated video's segments end where its frames end, not where its header said it would.
    end_time = info.duration if not warnings else report.get("end", 0.0)
    sampling = {"mode": "keyframes", "every": keyframes_every} if keyframes_every else {"mode": "fps", "fps": fps}
    return Timeline(path=str(path), model=classifier.name, precision=classifier.precision, info=info,
                    sampling=sampling, samples=samples, segments=merge_segments(samples, end_time, min_segment),
                    warnings=warnings, seconds=seconds)
