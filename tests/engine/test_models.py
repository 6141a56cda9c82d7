"""The architectures: the paper's CNN as specified, Glorot init, BN with a shift but no learned scale."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.models import ARCHITECTURES, build_model


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_shapes_bn_and_init(name):
    model = build_model(name)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            assert m.weight is None  # no learned scale
            assert m.bias.requires_grad  # learned shift
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_out, fan_in = m.weight.shape[0] * m.weight[0, 0].numel(), m.weight[0].numel()
            assert m.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))  # Glorot-uniform bound
    linears = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [m.bias is not None for m in linears] == [False, False, False, True]  # no bias before BN


def test_pooling_before_relu_is_the_same_function_and_gradient():
    """The models pool before their ReLU (cheaper double backward); the paper's order gives the same
    outputs and input gradients."""
    torch.manual_seed(0)
    model = build_model("demo").train()
    paper_order = nn.Sequential(*[model[i] for i in (0, 1, 3, 2, 4, 5, 7, 6, *range(8, len(model)))]).train()
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    torch.manual_seed(1)
    ours = model(x)
    (g_ours,) = torch.autograd.grad(ours.logsumexp(1).sum(), x)
    torch.manual_seed(1)  # the same dropout mask
    theirs = paper_order(x)
    (g_theirs,) = torch.autograd.grad(theirs.logsumexp(1).sum(), x)
    assert isinstance(model[2], nn.MaxPool2d) and isinstance(model[3], nn.ReLU)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(g_ours, g_theirs)


def test_paper_architecture_matches_the_reference_size():
    # conv 5×5×32, conv 5×5×64, FC 1024, FC 10: ≈3.27M parameters in the reference implementation.
    n = sum(p.numel() for p in build_model("paper").parameters())
    assert 3.2e6 < n < 3.3e6
    assert [m.out_channels for m in build_model("paper").modules() if isinstance(m, nn.Conv2d)] == [32, 64]


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build_model("resnet")
