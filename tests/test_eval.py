"""Evaluation tooling: Bjøntegaard deltas on known curves, metrics, classical codecs, sweeps."""
import json

import numpy as np
import pytest

from conftest import SHARED, natural_image
from ncodec.eval import bd_psnr, bd_rate, ms_ssim, psnr
from ncodec.eval.classical import classical_codecs

R = [0.1, 0.25, 0.5, 1.0, 1.5]
P = [28.0, 30.5, 33.0, 36.0, 38.0]


def test_bd_rate_known_values():
    assert bd_rate(R, P, R, P) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(R, P, [r * 0.9 for r in R], P) == pytest.approx(-10.0, abs=0.01)
    assert bd_rate(R, P, [r * 1.25 for r in R], P) == pytest.approx(25.0, abs=0.01)
    assert bd_psnr(R, P, R, [p + 0.5 for p in P]) == pytest.approx(0.5, abs=1e-9)
    with pytest.raises(ValueError):
        bd_rate(R, P, R, [p + 20 for p in P])  # no overlap
    with pytest.raises(ValueError):
        bd_rate([0.1], [30.0], R, P)


def test_bd_rate_reproduces_published_anchor_table():
    path = SHARED / "anchors" / "kodak_pillow_classical.json"
    if not path.exists():
        pytest.skip(f"{path} not found (../shared is absent)")
    curves = json.loads(path.read_text())
    avif = np.array(curves["AVIF"])
    for name, expected in (("JPEG", 98.0), ("WEBP", 28.0)):
        c = np.array(curves[name])
        assert bd_rate(avif[:, 0], avif[:, 1], c[:, 0], c[:, 1]) == pytest.approx(expected, abs=1.0)
    mbt = json.loads((SHARED / "anchors" / "compressai_kodak" / "compressai-mbt2018-mean_mse_cpu.json").read_text())
    r = mbt["results"]
    assert bd_rate(avif[:, 0], avif[:, 1], r["bpp"], r["psnr-rgb"]) == pytest.approx(-12.0, abs=1.0)


def test_metrics():
    a = natural_image(200, 200)
    b = a.copy()
    b[0, 0, 0] ^= 1
    mse = 1 / a.size
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-6)
    assert psnr(a, a) == float("inf")
    assert ms_ssim(a, a) == pytest.approx(1.0)
    assert 0.9 < ms_ssim(a[:60, :60], b[:60, :60]) <= 1.0
    assert np.isnan(ms_ssim(a[:20, :20], b[:20, :20]))


@pytest.mark.parametrize("name", sorted(classical_codecs()))
def test_classical_codecs_roundtrip(name):
    codec = classical_codecs()[name]
    img = natural_image(48, 64)
    sizes = []
    for q in (codec.qualities[0], codec.qualities[-1]):
        data = codec.encode(img, q)
        out = codec.decode(data)
        assert out.shape == img.shape
        sizes.append(len(data))
    assert sizes[0] < sizes[1]
    assert psnr(img, out) > 28


def test_sweep_writes_compressai_layout(tmp_path, monkeypatch):
    from PIL import Image

    import ncodec
    from ncodec.eval.rd_image import run_image_eval

    class Fake:  # a stand-in learned codec: JPEG under another name
        qualities = [20, 50, 90]
        jpeg = classical_codecs()["jpeg"]

        def encode(self, img, quality):
            return self.jpeg.encode(img, int(quality) - 5)

        def decode(self, data):
            return self.jpeg.decode(data)

    monkeypatch.setattr(ncodec, "load_codec", lambda name, *a, **k: Fake())
    monkeypatch.setattr(ncodec, "list_codecs", lambda modality=None: ["fake"])
    for i, (h, w) in enumerate([(40, 48), (36, 52)]):
        Image.fromarray(natural_image(h, w)).save(tmp_path / f"{i}.png")
    out = tmp_path / "res"
    curves = run_image_eval(tmp_path, ["ncodec:*", "jpeg", "webp"], out, per_image=True, anchor="jpeg",
                            workers=1, progress=False)
    data = json.loads((out / "ncodec-fake.json").read_text())
    assert set(data["results"]) >= {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert len(data["results"]["bpp"]) == 3 and len(data["per_image"]["20"]) == 2
    assert "| jpeg |" in (out / "bdrate.md").read_text()
    assert set(curves) == {"ncodec:fake", "jpeg", "webp"}


def test_plot(tmp_path):
    from ncodec.eval import plot_rd

    p = tmp_path / "a.json"
    p.write_text(json.dumps({"name": "a", "results": {"bpp": R, "psnr-rgb": P}}))
    plot_rd([p], tmp_path / "rd.png")
    assert (tmp_path / "rd.png").stat().st_size > 1000
