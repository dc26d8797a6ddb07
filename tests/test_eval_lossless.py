"""ncodec.eval.lossless: the lossless benchmark on two small synthetic images, with the Pillow codecs
and fake ncodec codecs (one exact, one that is not)."""
import io
import json
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import ncodec
from ncodec.errors import InputError
from ncodec.eval import lossless
from ncodec.eval.classical import CodecUnavailable

H, W = 32, 48
SIZES = {"a.png": (H, W), "b.png": (W, H)}


def _runs_here(name: str) -> bool:
    try:
        lossless.get_codec(name)
    except CodecUnavailable:
        return False
    return True


CLASSICAL = [n for n in lossless.LOSSLESS_CODECS if _runs_here(n)]


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth gradients with a little noise: photo-like enough for every codec to beat raw pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = [96 + 60 * np.sin(x / 7 + c) + 40 * np.cos(y / 5 - c) for c in range(3)]
    return (np.stack(planes, axis=2) + rng.normal(0, 2, (h, w, 3))).round().clip(0, 255).astype(np.uint8)


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for i, (name, (h, w)) in enumerate(SIZES.items()):
        Image.fromarray(smooth_image(h, w, i)).save(d / name)
    (d / "notes.txt").write_text("not an image")
    return d


class ZlibCodec:
    """Stand-in for an ncodec lossless codec: zlib over the raw pixels; records the presets it got."""

    description = "fake zlib"
    qualities = [1.0]

    def __init__(self, corrupt=None):
        self.corrupt, self.presets = corrupt, []

    def encode(self, image, quality=None, preset=None):
        self.presets.append(preset)
        return np.array(image.shape, np.uint16).tobytes() + zlib.compress(image.tobytes())

    def decode(self, data):
        shape = tuple(np.frombuffer(data[:6], np.uint16))
        out = np.frombuffer(zlib.decompress(data[6:]), np.uint8).reshape(shape).copy()
        return out if self.corrupt is None else self.corrupt(out)


@pytest.fixture
def fake_ncodec(monkeypatch):
    """``ncodec:fake`` is a ZlibCodec; set ``.codec`` to swap it."""
    holder = SimpleNamespace(codec=ZlibCodec())
    monkeypatch.setattr(ncodec, "list_codecs", lambda modality=None: ["fake"] if modality == "image" else [])
    monkeypatch.setattr(ncodec, "load_codec", lambda name, *a, **k: holder.codec)
    return holder


def test_classical_codecs_round_trip_and_write_results(tmp_path, image_dir):
    assert "png" in CLASSICAL
    out = tmp_path / "res"
    summary = lossless.run_lossless_eval(image_dir, CLASSICAL, out, workers=0, progress=False)
    assert summary["images"] == 2 and set(summary["json"]) == set(CLASSICAL)
    for name in CLASSICAL:
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["name"] == name and "lossless" in doc["description"]
        rows, totals = doc["per_image"], doc["totals"]
        assert [r["image"] for r in rows] == ["a.png", "b.png"]
        for r in rows:
            assert (r["height"], r["width"]) == SIZES[r["image"]]
            assert r["bpsp"] == pytest.approx(8 * r["bytes"] / (r["height"] * r["width"] * 3))
            assert 0 < r["bpsp"] < 8 and r["encoding_time"] >= 0 and r["decoding_time"] >= 0
        subpixels = sum(h * w * 3 for h, w in SIZES.values())
        assert totals["subpixels"] == subpixels and totals["bytes"] == sum(r["bytes"] for r in rows)
        assert totals["bpsp"] == pytest.approx(8 * totals["bytes"] / subpixels)
        assert totals["encoding_time"] == pytest.approx(np.mean([r["encoding_time"] for r in rows]))

    png_rows = json.loads((out / "png.json").read_text())["per_image"]
    for r in png_rows:
        buf = io.BytesIO()
        Image.open(image_dir / r["image"]).save(buf, format="PNG", optimize=True)
        assert r["bytes"] == len(buf.getvalue())

    md = (out / "lossless.md").read_text()
    assert md == summary["table"]
    assert "| codec | bpsp | vs PNG (%) | encode (s/image) | decode (s/image) |" in md
    assert f"| png | {summary['totals']['png']['bpsp']:.4f} | +0.0 |" in md
    for name in CLASSICAL:
        assert f"| {name} |" in md


def test_worker_processes_measure_the_same_bytes(tmp_path, image_dir):
    here = lossless.run_lossless_eval(image_dir, ["png"], tmp_path / "here", workers=0, progress=False)
    pooled = lossless.run_lossless_eval(image_dir, ["png"], tmp_path / "pool", workers=1, progress=False)
    assert pooled["totals"]["png"]["bytes"] == here["totals"]["png"]["bytes"]


def test_ncodec_codec_and_preset(tmp_path, image_dir, fake_ncodec):
    summary = lossless.run_lossless_eval(image_dir, ["ncodec:fake", "ncodec:fake+medium", "png"], tmp_path / "o",
                                         workers=0, progress=False)
    assert fake_ncodec.codec.presets == [None, None, "medium", "medium"]
    doc = json.loads((tmp_path / "o" / "ncodec-fake+medium.json").read_text())
    assert "fake zlib, preset medium" in doc["description"] and len(doc["per_image"]) == 2
    assert summary["totals"]["ncodec:fake"]["bytes"] == summary["totals"]["ncodec:fake+medium"]["bytes"]
    with pytest.raises(ValueError, match="ncodec:fake\\+fast\\|medium\\|slow"):
        lossless.run_lossless_eval(image_dir, ["ncodec:fake+quick"], tmp_path / "o", progress=False)


def _flip_one(out):
    out[0, 0, 0] ^= 1
    return out


@pytest.mark.parametrize("corrupt, message", [
    (_flip_one, "ncodec:fake did not decode a.png exactly: 1 sub-pixels differ, by up to 1"),
    (lambda out: out[:, :, :1], "ncodec:fake decoded a.png as uint8 \\(32, 48, 1\\), not uint8 \\(32, 48, 3\\)"),
    (lambda out: out.astype(np.uint16), "ncodec:fake decoded a.png as uint16"),
])
def test_inexact_decoder_is_an_error(tmp_path, image_dir, fake_ncodec, corrupt, message):
    fake_ncodec.codec = ZlibCodec(corrupt)
    out = tmp_path / "o"
    with pytest.raises(lossless.NotLosslessError, match=message):
        lossless.run_lossless_eval(image_dir, ["png", "ncodec:fake"], out, workers=0, progress=False)
    assert not list(out.glob("*.json")) and not (out / "lossless.md").exists()


def test_bad_arguments_and_inputs(tmp_path, image_dir):
    for codecs in (["png", "jpeg"], ["ncodec:*"]):
        with pytest.raises(ValueError, match="unknown lossless codec"):
            lossless.run_lossless_eval(image_dir, codecs, tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="limit"):
        lossless.run_lossless_eval(image_dir, ["png"], tmp_path / "o", limit=0, progress=False)
    assert not (tmp_path / "o").exists()
    grey = tmp_path / "grey"
    grey.mkdir()
    Image.fromarray(smooth_image(8, 8, 0)[:, :, 0]).save(grey / "g.png")
    with pytest.raises(InputError, match="g.png has 1 channels"):
        lossless.run_lossless_eval(grey, ["png"], tmp_path / "o", progress=False)


def test_default_codecs_skip_what_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(ncodec, "list_codecs", lambda modality=None: ["slice"])
    names = lossless.default_codecs()
    assert "ncodec:lossless" not in names and set(names) == set(CLASSICAL)
    assert "note: skipping ncodec:lossless: this ncodec has no codec 'lossless'" in capsys.readouterr().err
    monkeypatch.setattr(ncodec, "list_codecs", lambda modality=None: ["slice", "lossless"])
    assert lossless.default_codecs()[-1] == "ncodec:lossless"


def test_cli(tmp_path, image_dir, capsys):
    from ncodec.cli import main

    out = tmp_path / "o"
    args = ["eval", "image", str(image_dir), "--lossless", "--codecs", "png", "--workers", "0", "--out", str(out)]
    assert main(args + ["--limit", "1"]) == 0
    assert "| png |" in capsys.readouterr().out
    assert [r["image"] for r in json.loads((out / "png.json").read_text())["per_image"]] == ["a.png"]
    for extra in (["--anchor", "png"], ["--codecs", "png,h266"], ["--codecs", ","], ["--limit", "0"]):
        assert main(args + extra) == 2
    assert "not for --lossless" in capsys.readouterr().err.splitlines()[0]
    assert main(["eval", "image", str(image_dir), "--limit", "1", "--codecs", "png"]) == 2
    assert "--limit is for --lossless" in capsys.readouterr().err


def test_the_lossless_codec_in_the_benchmark(tmp_path, image_dir):
    summary = lossless.run_lossless_eval(image_dir, ["png", "ncodec:lossless+fast"], tmp_path / "o", limit=1,
                                         workers=0, progress=False)
    totals = summary["totals"]
    assert totals["ncodec:lossless+fast"]["images"] == 1
    assert 0 < totals["ncodec:lossless+fast"]["bpsp"] < 8
