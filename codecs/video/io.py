"""Video files in and out: PyAV for containers (mp4, mkv, webm, mov, y4m), Pillow for folders of
frames, PyAV's swscale for raw I420 (.yuv) conversion.

Every reader returns a :class:`Video` (T x H x W x 3 uint8 RGB frames and a frame rate) and checks
the declared size against :data:`MAX_FRAMES`, :data:`MAX_SIDE` and :data:`MAX_BYTES` *before* it
allocates the frames.  Every writer writes atomically (see :mod:`ncodec.fileio`).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError, UsageError
from ..fileio import atomic_output

CONTAINER_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".y4m"}
FRAME_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
RAW_SUFFIXES = {".yuv"}
READ_SUFFIXES = CONTAINER_SUFFIXES | RAW_SUFFIXES
WRITE_SUFFIXES = {".mp4", ".mkv", ".y4m"}   # or a path without suffix: a folder of PNG frames
MAX_FRAMES = 100_000
MAX_SIDE = 8192
MAX_BYTES = 8 << 30          # decoded RGB frames held in memory at once
MAX_FPS = 1000


@dataclass
class Video:
    """Decoded RGB frames (T x H x W x 3 uint8) and their frame rate."""

    frames: np.ndarray
    fps: Fraction

    def __post_init__(self):
        self.frames = check_frames(self.frames)
        self.fps = check_fps(self.fps)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, height, width)."""
        return tuple(self.frames.shape[:3])


def check_fps(fps) -> Fraction:
    """A positive, plausible frame rate as a Fraction (accepts int, float, str like '30000/1001')."""
    try:
        f = Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps
    except (TypeError, ValueError, ZeroDivisionError):
        raise InputError(f"invalid frame rate {fps!r}") from None
    if not 0 < f <= MAX_FPS:
        raise InputError(f"frame rate {float(f):g} is outside 0..{MAX_FPS} fps")
    return f


def check_dims(frames: int, height: int, width: int) -> None:
    """Refuse empty or absurd clips before any frame is allocated."""
    if frames < 1:
        raise InputError("the video has no frames")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise InputError(f"frame size {width}x{height} is outside 1..{MAX_SIDE} per side")
    if frames > MAX_FRAMES or frames * height * width * 3 > MAX_BYTES:
        raise InputError(f"{frames} frames of {width}x{height} exceed ncodec's limit "
                         f"({MAX_FRAMES} frames, {MAX_BYTES >> 30} GiB of decoded frames)")


def check_frames(frames) -> np.ndarray:
    """Validate a T x H x W x 3 uint8 array (a single H x W x 3 frame is not a video)."""
    a = np.asarray(frames)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
        raise InputError(f"video frames must be a T x H x W x 3 uint8 array, got {a.dtype} {a.shape}")
    check_dims(*a.shape[:3])
    return a


def parse_wxh(text: str, what: str) -> tuple[int, int]:
    """'176x144' -> (176, 144); UsageError otherwise."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UsageError(f"{what} must look like WIDTHxHEIGHT (e.g. 176x144), not {text!r}") from None
    if w < 1 or h < 1:
        raise UsageError(f"{what} must be positive, not {text!r}")
    return w, h


def _grow(buffer: list, frame: np.ndarray, max_frames: int | None) -> bool:
    """Append a frame, enforcing the size limits as frames arrive; False once max_frames is reached."""
    buffer.append(frame)
    check_dims(len(buffer), *frame.shape[:2])
    return max_frames is None or len(buffer) < max_frames


def _read_container(path: Path, max_frames: int | None) -> Video:
    import av

    try:
        with av.open(str(path)) as box:
            if not box.streams.video:
                raise InputError(f"{path} has no video stream")
            stream = box.streams.video[0]
            ctx = stream.codec_context
            if ctx.width and ctx.height:
                check_dims(min(stream.frames or 1, max_frames or MAX_FRAMES), ctx.height, ctx.width)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            frames: list[np.ndarray] = []
            for frame in box.decode(stream):
                if not _grow(frames, frame.to_ndarray(format="rgb24"), max_frames):
                    break
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: cannot decode video ({exc})") from None
    if not frames:
        raise InputError(f"{path} holds no decodable frames")
    return Video(np.stack(frames), rate or Fraction(25))


def _read_folder(path: Path, fps, max_frames: int | None) -> Video:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise InputError(f"{path} holds no frame images ({', '.join(sorted(FRAME_SUFFIXES))})")
    files = files[:max_frames] if max_frames else files
    frames: list[np.ndarray] = []
    try:
        for f in files:
            with Image.open(f) as im:
                check_dims(len(files), im.height, im.width)
                frame = np.asarray(im.convert("RGB"))
            if frames and frame.shape != frames[0].shape:
                raise InputError(f"{f.name} is {frame.shape[1]}x{frame.shape[0]}, unlike the first frame")
            _grow(frames, frame, None)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot read a frame ({exc})") from None
    return Video(np.stack(frames), Fraction(25) if fps is None else fps)


def _read_raw_i420(path: Path, frame_size: tuple[int, int] | None, fps, max_frames: int | None) -> Video:
    import av

    if frame_size is None:
        raise UsageError(f"{path.name} is raw I420: give its frame size with --frame-size WxH (and --fps)")
    w, h = frame_size
    if w % 2 or h % 2:
        raise InputError(f"raw I420 needs an even frame size, not {w}x{h}")
    per_frame = w * h * 3 // 2
    size = path.stat().st_size
    if size == 0 or size % per_frame:
        raise InputError(f"{path.name}: {size} bytes is not a whole number of {w}x{h} I420 frames")
    count = min(size // per_frame, max_frames or MAX_FRAMES + 1)
    check_dims(count, h, w)
    raw = np.fromfile(path, dtype=np.uint8, count=count * per_frame).reshape(count, h * 3 // 2, w)
    frames = np.stack([av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="yuv420p").to_ndarray(format="rgb24")
                       for f in raw])
    return Video(frames, Fraction(25) if fps is None else fps)


def read_video(path: Path, frame_size: tuple[int, int] | None = None, fps=None,
               max_frames: int | None = None, crop: tuple[int, int] | None = None) -> Video:
    """Read a video file, a raw .yuv (I420, needs ``frame_size`` = (W, H)) or a folder of frames.

    ``fps`` sets the rate of raw and folder inputs; ``max_frames`` keeps the first frames only;
    ``crop`` = (W, H) keeps the centre of every frame (as HNeRV's 640x1280 Bunny crop)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if max_frames is not None and max_frames < 1:
        raise UsageError("--max-frames must be at least 1")
    fps = None if fps is None else check_fps(fps)
    if path.is_dir():
        video = _read_folder(path, fps, max_frames)
    elif path.suffix.lower() in RAW_SUFFIXES:
        video = _read_raw_i420(path, frame_size, fps, max_frames)
    elif path.suffix.lower() in CONTAINER_SUFFIXES:
        video = _read_container(path, max_frames)
        if fps is not None:
            video.fps = fps
    else:
        raise InputError(f"{path}: unsupported input type {path.suffix or '(no suffix)'}; videos: "
                         f"{', '.join(sorted(READ_SUFFIXES))} or a folder of frames")
    return center_crop(video, crop) if crop else video


def center_crop(video: Video, size: tuple[int, int]) -> Video:
    """The centre ``size`` = (W, H) of every frame."""
    w, h = size
    _, fh, fw = video.shape
    if w > fw or h > fh:
        raise UsageError(f"cannot crop {fw}x{fh} frames to {w}x{h}")
    top, left = (fh - h) // 2, (fw - w) // 2
    return Video(np.ascontiguousarray(video.frames[:, top:top + h, left:left + w]), video.fps)


def resize(video: Video, size: tuple[int, int]) -> Video:
    """Every frame resampled to ``size`` = (W, H) with Pillow's Lanczos filter."""
    from PIL import Image

    frames = [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.LANCZOS)) for f in video.frames]
    return Video(np.stack(frames), video.fps)


def _write_av(path: Path, video: Video) -> None:
    """H.264 4:4:4 at QP 0 (lossless in YCbCr; only the RGB<->YCbCr rounding remains) or y4m 4:4:4."""
    import av

    t, h, w = video.shape
    fmt = "yuv4mpegpipe" if path.suffix.lower() == ".y4m" else None
    with av.open(str(path), "w", format=fmt) as box:
        if fmt:
            stream = box.add_stream("rawvideo", rate=video.fps)
        else:
            stream = box.add_stream("libx264", rate=video.fps)
            stream.options = {"qp": "0", "preset": "medium"}
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv444p"
        for frame in video.frames:
            if w % 2 or h % 2:
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(format="yuv444p")
            box.mux(stream.encode(vf))
        box.mux(stream.encode(None))


def _write_png_folder(path: Path, video: Video, force: bool) -> None:
    """PNG frames 00000.png ... built in a temporary folder, then renamed into place."""
    from PIL import Image

    with atomic_output(path, force, folder=True) as tmp:
        for i, frame in enumerate(video.frames):
            Image.fromarray(frame).save(tmp / f"{i:05d}.png")


def write_video(path: Path, video: Video, force: bool = False) -> None:
    """Write ``.mp4``/``.mkv`` (lossless H.264 4:4:4), ``.y4m`` (4:4:4) or, for a path without a
    suffix, a folder of PNG frames (exact RGB)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not suffix:
        _write_png_folder(path, video, force)
        return
    if suffix not in WRITE_SUFFIXES:
        raise OutputError(f"cannot write {suffix} video: use {', '.join(sorted(WRITE_SUFFIXES))} "
                          "or a folder name (PNG frames)")
    with atomic_output(path, force) as tmp:
        _write_av(tmp, video)
