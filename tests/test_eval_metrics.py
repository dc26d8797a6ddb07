"""ncodec.eval.metrics: PSNR on a known error, MS-SSIM at full and reduced scale counts, bpp."""
import numpy as np
import pytest

from ncodec.eval.metrics import bpp, ms_ssim, ms_ssim_scales, psnr


def photo(h: int, w: int) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:100 + h, 150:150 + w])


def noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(img + noise, 0, 255).round().astype(np.uint8)


def test_psnr_of_a_known_mse():
    ref = np.full((10, 20, 3), 100, np.uint8)
    test = ref.copy()
    test[:5] += 4  # half the samples off by 4: MSE = 8
    assert psnr(ref, test) == pytest.approx(10 * np.log10(255**2 / 8), abs=1e-9)
    assert psnr(ref, test, data_range=1) == pytest.approx(10 * np.log10(1 / 8), abs=1e-9)


def test_psnr_identical_is_inf_and_shapes_must_match():
    img = photo(16, 16)
    assert psnr(img, img) == float("inf")
    with pytest.raises(ValueError, match="shape"):
        psnr(img, img[:8])


def test_ms_ssim_full_scale():
    img = photo(176, 192)
    assert ms_ssim_scales(176, 192) == 5
    assert ms_ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    light, heavy = ms_ssim(img, noisy(img, 4)), ms_ssim(img, noisy(img, 20))
    assert 0 < heavy < light < 1


@pytest.mark.parametrize("side,scales", [(161, 5), (160, 4), (81, 4), (64, 3), (48, 3), (30, 2), (11, 1), (10, 0)])
def test_ms_ssim_scale_count(side, scales):
    assert ms_ssim_scales(side, 500) == scales
    assert ms_ssim_scales(500, side) == scales


@pytest.mark.parametrize("h,w", [(120, 100), (48, 64), (16, 16)])
def test_ms_ssim_small_images_use_fewer_scales(h, w):
    img = photo(h, w)
    assert ms_ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    assert 0 < ms_ssim(img, noisy(img, 20)) < ms_ssim(img, noisy(img, 4)) < 1


def test_ms_ssim_tiny_image_is_nan():
    img = photo(10, 40)
    assert np.isnan(ms_ssim(img, img))


def test_bpp():
    assert bpp(1000, 100, 80) == pytest.approx(1.0)
    assert bpp(768 * 512 * 3, 512, 768) == pytest.approx(24.0)
