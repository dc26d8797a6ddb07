"""ncodec.eval.bdrate: Bjøntegaard deltas on constructed curves and on the shared Kodak anchors."""
import json
from pathlib import Path

import numpy as np
import pytest

from ncodec.eval.bdrate import bd_psnr, bd_rate, quality_at_rate
from ncodec.eval.rd_image import read_curves

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ANCHORS = SHARED / "anchors"

RATE = [0.1, 0.25, 0.5, 1.0, 1.5, 2.2]
PSNR = [27.0, 29.8, 32.5, 35.6, 37.4, 39.3]


def test_identical_curves_give_zero():
    assert bd_rate(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-12)
    assert bd_psnr(RATE, PSNR, RATE, PSNR) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("scale", [0.9, 1.25, 0.5])
def test_scaled_rates(scale):
    test_rate = [r * scale for r in RATE]
    assert bd_rate(RATE, PSNR, test_rate, PSNR) == pytest.approx((scale - 1) * 100, abs=0.01)
    assert bd_rate(test_rate, PSNR, RATE, PSNR) == pytest.approx((1 / scale - 1) * 100, abs=0.01)


def test_shifted_psnr():
    better = [p + 0.5 for p in PSNR]
    assert bd_psnr(RATE, PSNR, RATE, better) == pytest.approx(0.5, abs=1e-9)
    assert bd_psnr(RATE, better, RATE, PSNR) == pytest.approx(-0.5, abs=1e-9)
    assert bd_rate(RATE, PSNR, RATE, better) < 0 < bd_rate(RATE, better, RATE, PSNR)


def test_point_order_does_not_matter():
    order = [3, 0, 5, 1, 4, 2]
    test_rate, test_psnr = [RATE[i] * 0.8 for i in order], [PSNR[i] + 0.2 for i in order]
    assert bd_rate(RATE, PSNR, test_rate, test_psnr) == pytest.approx(
        bd_rate(RATE, PSNR, [r * 0.8 for r in RATE], [p + 0.2 for p in PSNR]), abs=1e-12)


def test_repeated_values_keep_the_better_point():
    """A dense sweep that repeats a PSNR (or a rate) is read as its efficient points only."""
    dense_rate, dense_psnr = RATE + [0.3], PSNR + [29.8]        # 29.8 dB again, at a higher rate
    assert bd_rate(dense_rate, dense_psnr, RATE, PSNR) == pytest.approx(0.0, abs=1e-12)
    assert bd_rate(RATE, PSNR, dense_rate, dense_psnr) == pytest.approx(0.0, abs=1e-12)
    dense_rate, dense_psnr = RATE + [0.25], PSNR + [29.0]       # 0.25 bpp again, at a lower PSNR
    assert bd_psnr(dense_rate, dense_psnr, RATE, PSNR) == pytest.approx(0.0, abs=1e-12)


def test_invalid_curves_raise():
    with pytest.raises(ValueError, match="at least 2 distinct points"):
        bd_rate([0.5], [30.0], RATE, PSNR)
    with pytest.raises(ValueError, match="at least 2 distinct points"):
        bd_rate([0.5, 0.6], [30.0, 30.0], RATE, PSNR)
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATE, PSNR, RATE, [p + 20 for p in PSNR])
    with pytest.raises(ValueError, match="do not overlap"):
        bd_psnr(RATE, PSNR, [r * 100 for r in RATE], PSNR)
    with pytest.raises(ValueError, match="rates"):
        bd_rate(RATE, PSNR, RATE[:-1], PSNR)
    with pytest.raises(ValueError, match="positive"):
        bd_rate([0.0] + RATE[1:], PSNR, RATE, PSNR)
    with pytest.raises(ValueError, match="finite"):
        bd_rate(RATE, PSNR[:-1] + [float("inf")], RATE, PSNR)


def _anchor_file(name: str) -> Path:
    path = ANCHORS / name
    if not path.exists():
        pytest.skip(f"{path} not found: the shared anchors folder (../shared/anchors) is absent")
    return path


def test_reproduces_shared_pillow_anchor_table():
    """shared/anchors/README.md: BD-rate vs Pillow AVIF on Kodak is JPEG +98 %, WebP +28 %."""
    curves = read_curves(_anchor_file("kodak_pillow_classical.json"))
    avif = curves["AVIF"]
    for name, expected in (("JPEG", 98.0), ("WEBP", 28.0)):
        got = bd_rate(avif["bpp"], avif["psnr-rgb"], curves[name]["bpp"], curves[name]["psnr-rgb"])
        assert got == pytest.approx(expected, abs=1.0), name
    assert bd_psnr(avif["bpp"], avif["psnr-rgb"], curves["JPEG"]["bpp"], curves["JPEG"]["psnr-rgb"]) < -3


@pytest.mark.parametrize("file,expected", [
    ("compressai-bmshj2018-factorized_mse_cpu.json", 20.0),
    ("compressai-bmshj2018-hyperprior_mse_cpu.json", -5.5),
    ("compressai-mbt2018-mean_mse_cpu.json", -12.0),
    ("vtm.json", -27.0),
])
def test_reproduces_compressai_curves_against_pillow_avif(file, expected):
    avif = read_curves(_anchor_file("kodak_pillow_classical.json"))["AVIF"]
    (curve,) = read_curves(_anchor_file(f"compressai_kodak/{file}")).values()
    assert bd_rate(avif["bpp"], avif["psnr-rgb"], curve["bpp"], curve["psnr-rgb"]) == pytest.approx(expected, abs=1.0)


def test_read_curves_rejects_other_layouts(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "points": 3}))
    with pytest.raises(ValueError, match="layout"):
        read_curves(bad)
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps({"A": [[0.5, 30.0], [1.0, 33.0]]}))
    assert read_curves(pairs) == {"A": {"bpp": [0.5, 1.0], "psnr-rgb": [30.0, 33.0]}}
    assert np.isfinite(bd_rate([0.5, 1.0], [30.0, 33.0], [0.4, 1.1], [30.0, 33.5]))


def test_quality_at_rate_reads_the_anchor_curve_and_never_extrapolates():
    """At the anchor's own points it returns their values, in between a value between its
    neighbours (monotone interpolation), and None outside the anchor's rate range."""
    assert quality_at_rate(RATE, PSNR, RATE[1]) == pytest.approx(PSNR[1])
    mid = quality_at_rate(RATE, PSNR, (RATE[1] * RATE[2]) ** 0.5)
    assert min(PSNR[1], PSNR[2]) < mid < max(PSNR[1], PSNR[2])
    assert quality_at_rate(RATE, PSNR, min(RATE) * 0.99) is None and quality_at_rate(RATE, PSNR, max(RATE) * 1.01) is None
    distances = [0.3, 0.2, 0.1]
    assert quality_at_rate([6, 12, 24], distances, 12, higher_is_better=False) == pytest.approx(0.2)
