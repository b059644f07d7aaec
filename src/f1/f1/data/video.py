"""Camera frames on disk: H.264 mp4 streams (LeRobot "video" features) and PNG bytes ("image" features).

Everything goes through PyAV in-process; no ffmpeg binary is needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from f1.errors import DatasetFormatError

logging.getLogger("libav").setLevel(logging.ERROR)

# LeRobot's tolerance between a queried and a decoded frame time.
DEFAULT_TOLERANCE_S = 1e-4


@dataclass(frozen=True)
class VideoEncoding:
    """How camera streams are encoded (LeRobot's h264 settings by default).

    Attributes:
        codec: PyAV encoder name; ``"h264"`` (libx264) is readable everywhere.
        pix_fmt: pixel format of the stream; ``"yuv420p"`` halves chroma resolution, ``"yuv444p"`` keeps it.
        gop: keyframe interval in frames (2 as in LeRobot: any frame decodes after at most one other).
        crf: constant rate factor, lower is better quality (LeRobot: 30; 0 is lossless for libx264).
        low_latency: x264/x265 ``tune=zerolatency``: every frame is emitted as soon as it is encoded (no
            B-frames, no lookahead), so the writer knows each file's size exactly when it decides to
            rotate, and decoding never reorders frames. The files stay plain H.264 mp4.
    """

    codec: str = "h264"
    pix_fmt: str = "yuv420p"
    gop: int = 2
    crf: int = 30
    low_latency: bool = True

    def __post_init__(self) -> None:
        if self.codec not in av.codecs_available:
            raise ValueError(f"codec: {self.codec!r} is not available in this PyAV build")
        if self.pix_fmt not in ("yuv420p", "yuv444p"):
            raise ValueError(f"pix_fmt: expected 'yuv420p' or 'yuv444p', got {self.pix_fmt!r}")
        if not isinstance(self.gop, int) or self.gop < 1:
            raise ValueError(f"gop: expected a positive int, got {self.gop!r}")
        if not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise ValueError(f"crf: expected an int in [0, 51], got {self.crf!r}")


class VideoStreamWriter:
    """Appends RGB frames to one mp4 file at a constant frame rate.

    Episodes are appended back to back (frame n is shown at n / fps); the first frame of each appended
    segment is forced to be a keyframe so every episode decodes independently, just as LeRobot's
    concatenated files do.
    """

    def __init__(self, path: Path, fps: int, height: int, width: int, encoding: VideoEncoding) -> None:
        self.path = path
        self.fps = fps
        self.num_frames = 0
        self.bytes_written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(path), mode="w")
        options = {"g": str(encoding.gop), "crf": str(encoding.crf)}
        if encoding.low_latency and encoding.codec in ("h264", "libx264", "hevc", "libx265"):
            options["tune"] = "zerolatency"
        self._stream = self._container.add_stream(encoding.codec, rate=fps, options=options)
        self._stream.pix_fmt = encoding.pix_fmt
        self._stream.height = height
        self._stream.width = width
        self._time_base = Fraction(1, fps)

    @property
    def duration_s(self) -> float:
        """Seconds of video written so far."""
        return self.num_frames / self.fps

    def append(self, frames: np.ndarray) -> None:
        """Encode (T, H, W, 3) uint8 frames after the ones already written."""
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.num_frames
            frame.time_base = self._time_base
            if i == 0:
                frame.pict_type = av.video.frame.PictureType.I
            self._mux(self._stream.encode(frame))
            self.num_frames += 1

    def close(self) -> None:
        """Flush the encoder and write the file trailer."""
        self._mux(self._stream.encode(None))
        self._container.close()

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            self.bytes_written += packet.size
            self._container.mux(packet)


def decode_video_frames(
    path: Path, timestamps: np.ndarray, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> np.ndarray:
    """Decode the frames of an mp4 file shown at the given times.

    Args:
        path: the mp4 file.
        timestamps: (K,) seconds into the file (any order, repeats allowed).
        tolerance_s: largest accepted gap between a wanted time and the decoded frame's time.

    Returns:
        (K, H, W, 3) uint8 RGB frames, in the order of ``timestamps``.

    Raises:
        DatasetFormatError: naming ``path`` when the file cannot be decoded or lacks a wanted frame.
    """
    wanted = np.unique(np.asarray(timestamps, dtype=np.float64))
    if wanted.size == 0:
        raise ValueError("timestamps: expected at least one time")
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetFormatError(path, "the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if wanted[0] > tolerance_s:
                container.seek(int(wanted[0] / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time)
                if t > wanted[-1] + tolerance_s:
                    break
                right = int(np.searchsorted(wanted, t))
                neighbours = [i for i in (right - 1, right) if 0 <= i < wanted.size]
                nearest = min(neighbours, key=lambda i: abs(wanted[i] - t))
                if abs(wanted[nearest] - t) <= tolerance_s:
                    found[nearest] = frame.to_ndarray(format="rgb24")
                    if len(found) == wanted.size:
                        break
    except (av.error.FFmpegError, OSError) as err:
        raise DatasetFormatError(path, f"cannot decode video ({err})") from None
    if len(found) < wanted.size:
        missing = [float(wanted[i]) for i in range(wanted.size) if i not in found]
        raise DatasetFormatError(
            path,
            f"{len(missing)} of {wanted.size} wanted frames not found within {tolerance_s}s "
            f"(first missing at t={missing[0]:.4f}s, last wanted at t={wanted[-1]:.4f}s): "
            "is the video shorter than the episode?",
        )
    order = np.searchsorted(wanted, np.asarray(timestamps, dtype=np.float64))
    return np.stack([found[int(i)] for i in order])


def probe_video_info(path: Path) -> dict[str, Any]:
    """The ``info`` block LeRobot stores for a video feature in ``meta/info.json``."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pix_fmt = stream.codec_context.pix_fmt or "yuv420p"
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec.canonical_name,
            "video.pix_fmt": pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate) if stream.base_rate else None,
            "video.channels": 4 if "a" in pix_fmt.replace("yuv", "").replace("gray", "") else 3,
            "has_audio": bool(container.streams.audio),
        }


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one (H, W, 3) uint8 image."""
    height, width = image.shape[:2]
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    packets = list(codec.encode(frame)) + list(codec.encode(None))
    return b"".join(bytes(p) for p in packets)


def decode_image_bytes(data: bytes, source: str | Path) -> np.ndarray:
    """Decode PNG (or JPEG) bytes into an (H, W, 3) uint8 RGB image; ``source`` names the file in errors."""
    codec_name = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "mjpeg"
    try:
        codec = av.CodecContext.create(codec_name, "r")
        frames = codec.decode(av.packet.Packet(data))
        if not frames:
            frames = codec.decode(None)
    except av.error.FFmpegError as err:
        raise DatasetFormatError(source, f"cannot decode an embedded image ({err})") from None
    if not frames:
        raise DatasetFormatError(source, "an embedded image decodes to nothing")
    return frames[0].to_ndarray(format="rgb24")
