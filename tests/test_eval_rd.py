"""ncodec.eval.rd_image and plot: a sweep over two tiny images with Pillow codecs and a fake ncodec codec."""
import csv
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import ncodec
from ncodec.eval import plot_rd, run_image_eval


class FakeCodec:
    """Stand-in for a learned codec: uniform quantisation (step 2**(6-quality)) then zlib."""

    qualities = [1.0, 2.0, 3.0]
    description = "fake quantiser"

    def encode(self, image, quality=None):
        step = 2 ** (6 - int(quality))
        q = (image // step).astype(np.uint8)
        return struct.pack(">HHB", *image.shape[:2], step) + zlib.compress(q.tobytes())

    def decode(self, data):
        h, w, step = struct.unpack(">HHB", data[:5])
        q = np.frombuffer(zlib.decompress(data[5:]), np.uint8).reshape(h, w, 3)
        return (q.astype(np.int32) * step + step // 2).clip(0, 255).astype(np.uint8)


@pytest.fixture
def fake_ncodec(monkeypatch):
    loaded = []
    monkeypatch.setattr(ncodec, "list_codecs", lambda modality=None: ["fake"] if modality == "image" else [])
    monkeypatch.setattr(ncodec, "load_codec", lambda name, *a, **k: loaded.append(name) or FakeCodec())
    return loaded


@pytest.fixture
def image_dir(tmp_path):
    from skimage import data

    d = tmp_path / "images"
    d.mkdir()
    photo = data.astronaut()
    Image.fromarray(photo[100:148, 150:214]).save(d / "a.png")
    Image.fromarray(photo[250:290, 200:252]).save(d / "b.png")
    (d / "notes.txt").write_text("not an image")
    return d


QUALITIES = {"jpeg": [20, 50, 90], "webp": [20, 50, 90]}


def test_sweep_writes_compressai_layout_and_bd_table(tmp_path, image_dir, fake_ncodec):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"published-x": [[0.5, 28.0], [1.5, 33.0], [3.0, 38.0]]}))
    out = tmp_path / "res"
    summary = run_image_eval(image_dir, ["ncodec:*", "jpeg", "webp"], out, per_image=True, anchor="jpeg",
                             workers=1, progress=False, reference_jsons=[ref], qualities=QUALITIES)
    assert fake_ncodec == ["fake"]
    assert summary["images"] == 2
    assert set(summary["json"]) == {"ncodec:fake", "jpeg", "webp"}
    assert set(summary["curves"]) == {"ncodec:fake", "jpeg", "webp", "published-x"}

    doc = json.loads((out / "ncodec-fake.json").read_text())
    assert doc["name"] == "ncodec:fake" and "fake quantiser" in doc["description"]
    res = doc["results"]
    assert set(res) == {"quality", "bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert res["quality"] == FakeCodec.qualities and all(len(v) == 3 for v in res.values())
    assert res["bpp"] == sorted(res["bpp"]) and res["psnr-rgb"] == sorted(res["psnr-rgb"])
    assert len(doc["per_image"]) == 3 * 2
    first = [r for r in doc["per_image"] if r["quality"] == 1.0]
    assert {r["image"] for r in first} == {"a.png", "b.png"}
    sizes = {"a.png": (48, 64), "b.png": (40, 52)}
    for r in first:
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / np.prod(sizes[r["image"]]))
    assert res["bpp"][0] == pytest.approx(np.mean([r["bpp"] for r in first]))
    assert res["psnr-rgb"][0] == pytest.approx(np.mean([r["psnr-rgb"] for r in first]))

    jpeg = json.loads((out / "jpeg.json").read_text())
    assert jpeg["results"]["quality"] == [20, 50, 90] and "per_image" in jpeg
    assert all(0.5 < s <= 1 for s in jpeg["results"]["ms-ssim-rgb"])

    md = (out / "bdrate.md").read_text()
    for name in ("ncodec:fake", "jpeg", "webp", "published-x"):
        assert f"| {name} |" in md
    with open(out / "bdrate.csv") as f:
        rows = {r["codec"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"ncodec:fake", "jpeg", "webp", "published-x"}
    assert float(rows["jpeg"]["bd_rate_pct"]) == 0.0
    by_name = {r["codec"]: r for r in summary["bdrate"]}
    assert by_name["webp"]["bd_rate_pct"] < 0  # WebP beats JPEG on this content


def test_reference_curve_as_anchor_and_plots(tmp_path, image_dir):
    ref = tmp_path / "ref.json"
    curve = {"bpp": [0.5, 1.5, 4.0], "psnr-rgb": [26.0, 31.0, 38.0]}
    ref.write_text(json.dumps({"name": "published", "results": curve}))
    out = tmp_path / "res"
    summary = run_image_eval(image_dir, ["jpeg"], out, anchor="published", workers=0, progress=False,
                             reference_jsons=[ref], qualities={"jpeg": [30, 80]})
    rows = {r["codec"]: r for r in summary["bdrate"]}
    assert set(rows) == {"jpeg", "published"} and rows["published"]["bd_rate_pct"] == 0.0
    assert "against **published**" in (out / "bdrate.md").read_text()
    assert "per_image" not in json.loads((out / "jpeg.json").read_text())
    for suffix in (".png", ".svg"):
        plot_rd([out / "jpeg.json", ref], tmp_path / f"rd{suffix}", title="test")
        assert (tmp_path / f"rd{suffix}").stat().st_size > 1000
    with pytest.raises(ValueError, match="no curve"), pytest.warns(UserWarning, match="no 'ms-ssim-rgb'"):
        plot_rd([ref], tmp_path / "ms.png", metric="ms-ssim-rgb")
    with pytest.raises(ValueError, match=".png or .svg"):
        plot_rd([ref], tmp_path / "rd.pdf")


def test_bad_arguments_fail_before_any_work(tmp_path, image_dir, fake_ncodec):
    with pytest.raises(ValueError, match="unknown codec"):
        run_image_eval(image_dir, ["jpeg", "h266"], tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="anchor"):
        run_image_eval(image_dir, ["jpeg"], tmp_path / "o", anchor="avif", progress=False)
    with pytest.raises(ValueError, match="qualities given"):
        run_image_eval(image_dir, ["jpeg"], tmp_path / "o", anchor=None, qualities={"webp": [50]}, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no lossless images"):
        run_image_eval(empty, ["jpeg"], tmp_path / "o", anchor=None, progress=False)
    assert not (tmp_path / "o").exists()


def test_cli_qualities_option(tmp_path, image_dir, capsys):
    from ncodec.cli import main

    out = tmp_path / "o"
    args = ["eval", "image", str(image_dir), "--codecs", "jpeg,webp", "--anchor", "jpeg", "--workers", "0",
            "--out", str(out), "--qualities", "jpeg=30,60,90", "--qualities", "webp=40,80"]
    assert main(args) == 0
    assert json.loads((out / "jpeg.json").read_text())["results"]["quality"] == [30, 60, 90]
    assert json.loads((out / "webp.json").read_text())["results"]["quality"] == [40, 80]
    for bad in ("jpeg", "jpeg=", "jpeg=a,b", "=5"):
        assert main(args[:-4] + ["--qualities", bad]) == 2
        assert "--qualities" in capsys.readouterr().err
    assert main(args[:-2] + ["--qualities", "jpeg=50"]) == 2     # twice for one codec
