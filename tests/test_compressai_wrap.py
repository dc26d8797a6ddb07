"""CompressAI zoo architectures wrapped as ncodec codecs code real, exact streams."""
import numpy as np
import pytest
import torch

from conftest import natural_image
from ncodec.image import from_compressai


@pytest.mark.parametrize("arch", ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"])
def test_wrapped_zoo_architecture_roundtrip(arch):
    from compressai.zoo import image_models

    torch.manual_seed(0)
    net = image_models[arch](quality=1, pretrained=False)  # untrained weights: exactness, not quality
    codec = from_compressai(net, name=f"test-{arch}")
    img = natural_image(64, 64)
    data = codec.encode(img, quality=1)
    out = codec.decode(data)
    assert out.shape == img.shape
    assert np.array_equal(codec.decode(data), out)
    assert codec.qualities == [1.0]
