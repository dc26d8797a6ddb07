"""The fixed-point entropy path gives bit-identical parameters whatever the float setup."""
import numpy as np
import pytest
import torch
from torch import nn

from ncodec.entropy import FixedPointMLP, FixedPointNet, to_fixed
from ncodec.image.models import hyper_synthesis


def make_net(seed=0):
    torch.manual_seed(seed)
    net = hyper_synthesis(32, 48)
    for p in net.parameters():
        p.data.normal_(0, 0.2)
    return net.eval()


@pytest.mark.parametrize("layers", [
    lambda: [nn.Conv2d(18, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 2, 1)],
    lambda: [nn.ReLU(), nn.Conv2d(5, 7, 1), nn.ReLU(), nn.ReLU(), nn.Conv2d(7, 3, 1, bias=False)],
])
def test_mlp_on_rows_gives_the_integers_of_the_network(layers):
    torch.manual_seed(3)
    net = nn.Sequential(*layers()).eval()
    for p in net.parameters():
        p.data.normal_(0, 2.0)
    x = to_fixed(torch.randn(1, net[0 if isinstance(net[0], nn.Conv2d) else 1].in_channels, 13, 11) * 3000)
    reference = FixedPointNet(net)(x)[0].flatten(1).T.numpy()          # clamped at +-2**14 along the way
    rows = FixedPointMLP(net)(np.ascontiguousarray(x[0].flatten(1).T.numpy()))
    np.testing.assert_array_equal(rows, reference)


def test_thread_count_does_not_change_results():
    net = FixedPointNet(make_net())
    x = to_fixed(torch.randn(1, 32, 7, 9) * 5)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = net(x)
        torch.set_num_threads(2)
        b = net(x)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(a, b)


def test_outputs_are_integers_and_exact():
    net = FixedPointNet(make_net(1))
    x = to_fixed(torch.randn(1, 32, 5, 6) * 3)
    y = net(x)
    assert torch.equal(y, torch.round(y))
    # evaluating the same integers with another memory layout gives the same bits
    y2 = net(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(y, y2)


def test_one_ulp_perturbation_of_inputs_is_absorbed():
    net = FixedPointNet(make_net(2))
    z = torch.round(torch.randn(1, 32, 6, 6) * 4)  # quantized latents are integers
    x = to_fixed(z)
    x_perturbed = to_fixed(torch.nextafter(z, z + 1))
    assert torch.equal(net(x), net(x_perturbed))


def test_batch_position_does_not_matter():
    net = FixedPointNet(make_net(3))
    x = to_fixed(torch.randn(3, 32, 4, 5))
    full = net(x)
    for i in range(3):
        assert torch.equal(full[i:i + 1], net(x[i:i + 1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the lent GPU machine)")
def test_cuda_gives_the_cpu_integers(monkeypatch):
    """On a GPU (float64 with cuDNN off) the networks give exactly the CPU's integers, whole and tiled,
    at activations near the clamp, where any inexact summation would show."""
    from ncodec.image.models import context_net

    for net in (make_net(4), context_net(40, 16).eval()):
        fp = FixedPointNet(net)
        x = to_fixed(torch.randn(2, net[0].in_channels, 37, 45) * 2000).clamp_(-2.0**24, 2.0**24)
        cpu = fp(x)
        assert torch.equal(fp(x.cuda()).cpu(), cpu)
        monkeypatch.setattr(FixedPointNet, "TILE_BYTES", 8 * fp.cost * 2 * 64)   # 8x8 input tiles
        assert torch.equal(fp(x.cuda()).cpu(), cpu)
        monkeypatch.undo()


def test_unsupported_layer_is_rejected():
    with pytest.raises(TypeError):
        FixedPointNet(nn.Sequential(nn.Conv2d(2, 2, 3), nn.GELU()))


def test_tiled_evaluation_is_bit_identical(monkeypatch):
    """Large inputs run tile by tile (bounded memory) and give exactly the whole-tensor result."""
    from ncodec.image.models import context_net

    for net in (make_net(2), context_net(40, 16).eval()):
        fp = FixedPointNet(net)
        x = to_fixed(torch.randn(1, net[0].in_channels, 23, 31) * 4)
        whole = fp(x)
        monkeypatch.setattr(FixedPointNet, "TILE_BYTES", 8 * fp.cost * 25)   # 5x5 input tiles
        tiled = fp(x)
        monkeypatch.undo()
        assert tiled.shape == whole.shape
        assert torch.equal(tiled, whole)
