"""Mutated streams never crash the decoders; outputs are never partial or clobbered.

The fuzz harness re-serializes each mutated container with a valid checksum so that the
mutations reach the decoders themselves.  Short mode runs here; the long mode is
``NCODEC_FUZZ_CASES=100000 pytest tests/test_robustness.py -k fuzz``.  The work a case may cause
is bounded by size, not timed: the fuzz run lowers the decoders' output limits, so whatever a
mutated stream declares, a decoder either rejects it up front or produces an output within them.
"""
import errno
import os
import random

import numpy as np
import pytest

import ncodec
from conftest import natural_image
from ncodec.audio import codec as audio_codec
from ncodec.container import Container
from ncodec.errors import NcodecError, OutputError
from ncodec.image import codec as image_codec
from ncodec.image.lossless.fit import Preset as LosslessPreset
from ncodec.image.overfit.fit import Preset
from ncodec.video import codec as video_codec

CASES = int(os.environ.get("NCODEC_FUZZ_CASES", "60"))
FUZZ_PIXELS = 1 << 18        # image pixels (default limit 200 MP)
FUZZ_SECONDS = 60            # audio length (default limit 3 hours)
FUZZ_VIDEO_BYTES = 1 << 22   # decoded video frames (default limit 8 GiB)


def mutate(c: Container, rng: random.Random) -> bytes:
    c = Container(c.codec, c.model, c.weights_digest, dict(c.fields), dict(c.sections), c.coder_version)
    kind = rng.randrange(7)
    names = list(c.sections)
    if kind == 0:  # bit flips inside a section
        n = rng.choice(names)
        b = bytearray(c.sections[n])
        for _ in range(rng.randint(1, 8)):
            if b:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        c.sections[n] = bytes(b)
    elif kind == 1:  # truncate a section
        n = rng.choice(names)
        c.sections[n] = c.sections[n][: rng.randrange(len(c.sections[n]) + 1)]
    elif kind == 2:  # random bytes for a section
        n = rng.choice(names)
        c.sections[n] = rng.randbytes(rng.randrange(0, 64) * 4)
    elif kind == 3:  # extreme field values
        k = rng.choice(list(c.fields))
        c.fields[k] = rng.choice([0, -1, 1, 2, 3, 4, 5, 63, 64, 65, 999, 2**16, 2**31, -(2**40), 2**62])
    elif kind == 4:  # drop or rename a section
        n = rng.choice(names)
        payload = c.sections.pop(n)
        if rng.random() < 0.5:
            c.sections["q" + n] = payload
    elif kind == 5:  # reorder sections
        items = list(c.sections.items())
        rng.shuffle(items)
        c.sections = dict(items)
    else:  # wrong field types
        k = rng.choice(list(c.fields))
        c.fields[k] = rng.choice(["x", 1.5, b"\x00", [1, 2]])
    return c.to_bytes()


def base_stream(name: str) -> bytes:
    """A small valid stream of each codec for the mutations to start from."""
    if name in ("hyperprior", "slice", "factorized", "overfit", "lossless", "walloc"):
        img = np.concatenate([natural_image(24, 40), np.full((24, 40, 1), 200, np.uint8)], axis=2)
        options = {"overfit": {"preset": Preset(iterations=20, candidates=1, warmup=2)},
                   "lossless": {"preset": LosslessPreset(steps=10, batch=256)}}.get(name, {})
        return ncodec.encode(img, codec=name, quality=3, device="cpu", **options)
    if name == "mdct":
        t = np.arange(8000) / 16000
        x = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)).astype(np.float32)[None]
        return ncodec.encode((x, 16000), codec="mdct", kbps=24, device="cpu")
    if name == "walloc-audio":
        x = np.random.default_rng(0).normal(0, 0.1, (2, 8000)).astype(np.float32)
        return ncodec.encode((x, 16000), codec="walloc", quality=3, device="cpu")
    from ncodec.video.io import Video

    t, y, x, c = np.ogrid[:3, :16, :24, :3]
    frames = (127 + 100 * np.sin(0.3 * x + 0.5 * t + c) * np.cos(0.2 * y)).astype(np.uint8)
    return ncodec.load_codec(name, "cpu").encode(Video(frames, 25), size="8k", epochs=2, progress=False)


def output_bytes(decoded) -> int:
    """Bytes of a decoded image (array), audio (``samples``) or video (``frames``)."""
    if isinstance(decoded, np.ndarray):
        return decoded.nbytes
    return (decoded.frames if hasattr(decoded, "frames") else decoded.samples).nbytes


@pytest.mark.parametrize("name", ["hyperprior", "slice", "factorized", "overfit", "lossless", "walloc", "mdct",
                                  "walloc-audio", "nerv", "hnerv"])
def test_fuzz_decoders(name, monkeypatch):
    monkeypatch.setattr(image_codec, "MAX_PIXELS", FUZZ_PIXELS)
    monkeypatch.setattr(audio_codec, "MAX_SECONDS", FUZZ_SECONDS)
    monkeypatch.setattr(video_codec, "MAX_BYTES", FUZZ_VIDEO_BYTES)
    audio_bound = audio_codec.MAX_CHANNELS * audio_codec.MAX_RATE * FUZZ_SECONDS * 4        # float32 samples
    bound = {"mdct": audio_bound, "walloc-audio": audio_bound,
             "nerv": FUZZ_VIDEO_BYTES, "hnerv": FUZZ_VIDEO_BYTES}.get(name, 4 * FUZZ_PIXELS)   # RGBA at most
    base = Container.from_bytes(base_stream(name))
    rng = random.Random(sum(map(ord, name)))
    largest = 0
    for _ in range(CASES):
        try:
            largest = max(largest, output_bytes(ncodec.decode(mutate(base, rng), device="cpu")))
        except NcodecError:
            pass
    assert largest <= bound, f"a mutated {name} stream decoded to {largest} bytes (limit {bound})"


def test_interrupted_and_failed_writes_leave_previous_file(tmp_path, monkeypatch):
    from ncodec import fileio

    target = tmp_path / "out.ncz"
    target.write_bytes(b"previous")
    real_replace = os.replace

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", no_space)
    with pytest.raises(OutputError, match="No space"):
        fileio.write_bytes(target, b"new", force=True)
    monkeypatch.setattr(fileio.os, "replace", real_replace)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fileio.write_bytes(target, b"new", force=True)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ncz"]  # no temporary left behind


def test_folder_outputs_replace_the_previous_folder_whole(tmp_path):
    from ncodec import fileio

    target = tmp_path / "frames"
    target.mkdir()
    (target / "00000.png").write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with fileio.atomic_output(target, force=True, folder=True) as tmp:
            (tmp / "00000.png").write_bytes(b"new")
            raise KeyboardInterrupt
    assert (target / "00000.png").read_bytes() == b"previous"
    with fileio.atomic_output(target, force=True, folder=True) as tmp:
        (tmp / "00000.png").write_bytes(b"new")
        (tmp / "00001.png").write_bytes(b"new")
    assert sorted(p.name for p in target.iterdir()) == ["00000.png", "00001.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]   # no temporary or old folder left behind
    with pytest.raises(OutputError, match="already exists"):
        with fileio.atomic_output(target, folder=True):
            pass


def test_failed_decode_leaves_no_output(tmp_path):
    src = tmp_path / "bad.ncz"
    data = bytearray(ncodec.encode(natural_image(16, 16), device="cpu"))
    data[-1] ^= 0xFF
    src.write_bytes(bytes(data))
    with pytest.raises(NcodecError):
        ncodec.decode_file(src, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_outputs_get_the_usual_file_mode(tmp_path):
    from ncodec import fileio

    target = tmp_path / "out.ncz"
    fileio.write_bytes(target, b"data")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
