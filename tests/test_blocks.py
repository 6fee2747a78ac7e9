"""Shared building blocks: shapes, skip semantics, and the ordering options cell spaces need."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgenas.blocks import (
    ConvBnAct,
    DepthwiseSeparable,
    FactorizedReduce,
    InvertedResidual,
    MobileBlock,
    SqueezeExcite,
    Zero,
    make_divisible,
    make_skip,
)
from edgenas.errors import UserError


def test_conv_bn_act_orders():
    post = ConvBnAct(4, 8, 3)
    pre = ConvBnAct(4, 8, 3, preact=True)
    assert isinstance(post[0], nn.Conv2d) and isinstance(post[-1], nn.ReLU)
    assert isinstance(pre[0], nn.ReLU) and isinstance(pre[-1], nn.BatchNorm2d)
    assert post(torch.randn(1, 4, 8, 8)).shape == (1, 8, 8, 8)


def test_depthwise_separable_dilated_keeps_resolution():
    block = DepthwiseSeparable(4, 6, 5, dilation=2, preact=True)
    assert block.depthwise[0].groups == 4 and block.depthwise[0].dilation == (2, 2)
    assert block(torch.randn(2, 4, 9, 9)).shape == (2, 6, 9, 9)


def test_inverted_residual_expands_and_projects():
    block = InvertedResidual(8, 16, 5, stride=2, expansion=6, se_ratio=0.25)
    assert block.expand[0].out_channels == 48
    assert block.se.reduce.out_channels == 2  # int(8 * 0.25), the block's input width
    assert block(torch.randn(2, 8, 16, 16)).shape == (2, 16, 8, 8)
    assert InvertedResidual(8, 8, 3, expansion=1).expand is None


def test_squeeze_excite_gates_channels():
    se = SqueezeExcite(4, 1)
    x = torch.randn(2, 4, 5, 5)
    y = se(x)
    ratio = y / x
    # One gate per (sample, channel), in (0, 1).
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio > 0) & (ratio < 1)).all()


def test_skip_kinds():
    assert make_skip("none", 8, 8, 1) is None
    assert isinstance(make_skip("identity", 8, 8, 1), nn.Identity)
    assert make_skip("identity", 8, 16, 1) is None  # shapes differ: no identity residual
    pool = make_skip("pool", 8, 16, 2)
    assert pool(torch.randn(1, 8, 8, 8)).shape == (1, 16, 4, 4)
    with pytest.raises(UserError, match="unknown skip"):
        make_skip("dense", 8, 8, 1)


def test_mobile_block_adds_its_skip():
    body = nn.Conv2d(3, 3, 1, bias=False)
    nn.init.zeros_(body.weight)
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(MobileBlock(body, nn.Identity())(x), x)
    assert torch.equal(MobileBlock(body, None)(x), torch.zeros_like(x))


def test_cell_ops():
    x = torch.randn(2, 4, 8, 8)
    assert Zero(2)(x).shape == (2, 4, 4, 4) and not Zero(2)(x).any()
    assert FactorizedReduce(4, 8)(x).shape == (2, 8, 4, 4)


def test_make_divisible():
    assert make_divisible(32 * 1.25) == 40
    assert make_divisible(12, 4) == 12
    assert make_divisible(10) == 16  # never below 90 % of the request
