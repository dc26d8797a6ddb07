"""ISCS channel saliency: it ranks the shipped slice model's latent channels as their measured
importance does, and reordering the channels leaves the reconstruction as it was."""
import pytest
import torch

import ncodec
from ncodec.image.saliency import (channel_saliency, main, measured_importance, rank_correlation,
                                   reorder_latent_channels, saliency_order)
from ncodec.image.weights import load_weights
from conftest import natural_image


@pytest.fixture(scope="module")
def slice_model():
    return load_weights(ncodec.api.assets_dir() / "image-slice.safetensors").model


def _tensor(img):
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


def test_saliency_predicts_measured_importance(slice_model):
    """On a photo crop the parameter saliency agrees with the distortion each channel adds when it is
    dropped far better than the trained channel order does."""
    with torch.no_grad():
        added = measured_importance(slice_model, _tensor(natural_image(128, 128)), 3.0)
    assert added.shape == (slice_model.config.M,) and (added > 0).sum() > 200
    by_saliency = rank_correlation(channel_saliency(slice_model), added)
    by_order = rank_correlation(-torch.arange(slice_model.config.M).float(), added)
    assert by_saliency > 0.6 and by_saliency > by_order + 0.3


def test_reordering_keeps_the_reconstruction(slice_model):
    import copy

    model = copy.deepcopy(slice_model)
    order = saliency_order(model)
    assert sorted(order.tolist()) == list(range(model.config.M))
    x = _tensor(natural_image(64, 64))
    q = torch.tensor([2.0])

    def recon(m):
        gain, inv_gain = m.gains(q)
        with torch.no_grad():
            return m.g_s(m.g_a(x) * gain * inv_gain), m.h_a(m.g_a(x) * gain)

    before = recon(model)
    reorder_latent_channels(model, order)
    after = recon(model)
    assert torch.allclose(before[0], after[0], atol=1e-4) and torch.allclose(before[1], after[1], atol=1e-4)
    assert torch.equal(saliency_order(model)[:20], torch.arange(20))     # now the most salient come first
    with pytest.raises(ValueError, match="permutation"):
        reorder_latent_channels(model, torch.zeros(model.config.M))


def test_rank_correlation():
    a = torch.tensor([1.0, 5.0, 2.0, 9.0])
    assert rank_correlation(a, a * 3 + 1) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)


def test_command_reports_both_correlations(tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(natural_image(64, 96)).save(path)
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "saliency against measured importance" in out and "most salient" in out
