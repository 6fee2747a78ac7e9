"""Expected latency of a distribution over MnasNet architectures, from the device's per-layer LUT.

The LUT predicts a network as `a * (sum of layer latencies) + c * layers + d * activations + b`
(`edgenas.latency.lut`). Every term is a sum over the network's layers, so the prediction is a sum
of per-layer costs `a * ms + c + d * activations(layer)` plus `b`, and its expectation under a
distribution is the sum of the per-layer expected costs: exact, and differentiable in the
probabilities.

Why the expectation is taken per block, over the pair of adjacent widths: the space chooses once
per block (op, kernel, SE, skip, width, layers; every layer of a block repeats the choice), and a
layer's LUT key is its own configuration plus its input channels. A block's first layer reads the
previous block's width, so its cost is a table over (op, kernel, SE, skip, this width, previous
width) and its expectation multiplies in both blocks' width probabilities; a later layer reads the
block's own width (table over op, kernel, SE, skip, width) and exists with the probability that the
block has that many layers; the head reads the last block's width. With the decisions independent
(one categorical each, as the space factorises them) this is the expectation of the LUT's
prediction, and for a one-hot distribution it is the LUT's prediction of that architecture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from edgenas.blocks.core import effective_skip
from edgenas.errors import UserError
from edgenas.latency.layers import LayerSpec, conv_size
from edgenas.latency.lut import LatencyLUT, space_layers
from edgenas.spaces.blockstrings import BlockArgs
from edgenas.spaces.mnas import MnasSpace, op_to_block

_PER_BLOCK = len(MnasSpace.FIELDS)  # op, kernel, se, skip, width, layers


class ExpectedLatency:
    """E[LAT] (ms) of independent per-decision distributions over an MnasNet space, on one LUT.

    Built once from the LUT (timing any layer of the space it lacks); calling it with one
    probability vector per decision of the space (in the space's decision order) gives a scalar
    tensor that gradients flow through.
    """

    def __init__(self, space: MnasSpace, lut: LatencyLUT, fill: bool = True) -> None:
        check_lut(space, lut)
        if fill:
            lut.fill(space_layers(space))
        self.space = space
        correction = lut.correction
        a, c, d = correction["a"], correction["c_per_layer"], correction["d_per_mvalue"]

        def cost(spec: LayerSpec) -> float:
            return a * lut.layer_sum([spec], fill=False) + c + d * math.prod(spec.input_shape) / 1e6

        config = space.config
        net = config.network
        size = config.resolution
        stem = BlockArgs("cn", 1, 3, net.stem_stride, net.stem_channels)
        constant = correction["b"] + cost(LayerSpec("stem", net.in_channels, net.stem_channels,
                                                    (1, net.in_channels, size, size), stem))
        size = conv_size(size, net.stem_stride)
        in_widths = [net.stem_channels]
        self.first: list[torch.Tensor] = []  # [op, kernel, se, skip, width, previous width]
        self.later: list[list[torch.Tensor]] = []  # per later position: [op, kernel, se, skip, width]
        self.present: list[list[torch.Tensor]] = []  # per later position: 1.0 where a layers choice has it
        for block, base in enumerate(config.base_stages):
            op_d, kernel_d, se_d, skip_d, width_d, layers_d = space.block_decisions(block)
            widths = [space.width(base, w) for w in width_d.choices]
            after = conv_size(size, base.stride)
            first = torch.zeros(len(op_d.choices), len(kernel_d.choices), len(se_d.choices), len(skip_d.choices),
                                len(widths), len(in_widths), dtype=torch.float64)
            repeats = [base.repeats + delta for delta in layers_d.choices]
            later = torch.zeros(max(repeats) - 1, *first.shape[:5], dtype=torch.float64)
            for o, op in enumerate(op_d.choices):
                block_type, expansion = op_to_block(op)
                for k, kernel in enumerate(kernel_d.choices):
                    for s, se in enumerate(se_d.choices):
                        for x, skip in enumerate(skip_d.choices):
                            for w, out in enumerate(widths):
                                for v, cin in enumerate(in_widths):
                                    first[o, k, s, x, w, v] = cost(_layer(block_type, expansion, kernel, se, skip,
                                                                          base.stride, cin, out, size))
                                for j in range(later.shape[0]):
                                    later[j, o, k, s, x, w] = cost(_layer(block_type, expansion, kernel, se, skip,
                                                                          1, out, out, after))
            self.first.append(first)
            self.later.append(list(later))
            self.present.append([torch.tensor([float(r > j + 1) for r in repeats], dtype=torch.float64)
                                 for j in range(later.shape[0])])
            size = after
            in_widths = widths
        self.head = torch.tensor([cost(LayerSpec("head", cin, net.head_channels, (1, cin, size, size)))
                                  for cin in in_widths], dtype=torch.float64)
        constant += cost(LayerSpec("classifier", net.head_channels, net.num_classes,
                                   (1, net.head_channels, size, size)))
        self.constant = float(constant)

    def __call__(self, probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
        """E[LAT] in ms for one probability vector per decision of the space (decision order)."""
        if len(probabilities) != len(self.space.decisions):
            raise ValueError(f"need {len(self.space.decisions)} probability vectors, got {len(probabilities)}")
        total = torch.zeros((), dtype=torch.float64, device=probabilities[0].device)
        previous = torch.ones(1, dtype=torch.float64, device=total.device)  # the stem's width
        for block in range(len(self.first)):
            p_op, p_k, p_se, p_skip, p_w, p_layers = (
                p.to(torch.float64) for p in probabilities[_PER_BLOCK * block: _PER_BLOCK * (block + 1)])
            first = self.first[block].to(total.device)
            total = total + torch.einsum("oksxwv,o,k,s,x,w,v->", first, p_op, p_k, p_se, p_skip, p_w, previous)
            for table, present in zip(self.later[block], self.present[block]):
                layer = torch.einsum("oksxw,o,k,s,x,w->", table.to(total.device), p_op, p_k, p_se, p_skip, p_w)
                total = total + layer * (p_layers @ present.to(total.device))
            previous = p_w
        return total + previous @ self.head.to(total.device) + self.constant

    def of_indices(self, indices: Sequence[int]) -> float:
        """E[LAT] of the one-hot distribution on one architecture (its LUT prediction)."""
        onehots = []
        for decision, index in zip(self.space.decisions, indices):
            vector = torch.zeros(len(decision.choices), dtype=torch.float64)
            vector[index] = 1.0
            onehots.append(vector)
        return float(self(onehots))

    def latency_range(self) -> tuple[float, float]:
        """(fastest, slowest) LUT prediction over every architecture of the space.

        Exact by dynamic programming over the blocks with the block's width as the state: given
        the widths on both sides, a block's cheapest (dearest) op, kernel, SE, skip and depth
        do not depend on any other block.
        """
        return self._extreme(torch.amin), self._extreme(torch.amax)

    def _block_costs(self, block: int) -> torch.Tensor:
        """The LUT cost of block `block` for every combination of its choices and the previous
        block's width: a tensor [op, kernel, se, skip, layers, width, previous width]."""
        first = self.first[block]
        layers = len(self.space.block_decisions(block)[5].choices)
        depth = torch.zeros(*first.shape[:4], layers, first.shape[4], dtype=torch.float64)
        for table, present in zip(self.later[block], self.present[block]):
            depth = depth + table.unsqueeze(4) * present.view(1, 1, 1, 1, -1, 1)
        return first.unsqueeze(4) + depth.unsqueeze(-1)

    def _extreme(self, reduce) -> float:
        best = torch.zeros(1, dtype=torch.float64)  # over the previous block's width (the stem: one)
        for block in range(len(self.first)):
            pair = reduce(self._block_costs(block).flatten(0, 4), dim=0)  # [width, previous]
            best = reduce(pair + best.view(1, -1), dim=1)
        return float(reduce(best + self.head)) + self.constant

    def trade_off(self, log_probs: Sequence[torch.Tensor], weight: float) -> tuple[int, ...]:
        """The architecture (choice indices) maximising `sum of log-probabilities - weight * LUT ms`.

        Exact by dynamic programming over the blocks with the width as the state, as the range is.
        Why this form: for `weight > 0` no architecture at most as slow is more probable (were one,
        it would score higher), for `weight < 0` none at least as fast; so walking `weight` walks the
        most probable architecture at each latency along the convex hull of (latency, log-probability).
        """
        scores, choices, previous_of = torch.zeros(1, dtype=torch.float64), [], []
        for block in range(len(self.first)):
            lp = [p.detach().to(torch.float64) for p in log_probs[_PER_BLOCK * block: _PER_BLOCK * (block + 1)]]
            lp_op, lp_k, lp_se, lp_skip, lp_w, lp_layers = lp
            local = (lp_op.view(-1, 1, 1, 1, 1) + lp_k.view(1, -1, 1, 1, 1) + lp_se.view(1, 1, -1, 1, 1)
                     + lp_skip.view(1, 1, 1, -1, 1) + lp_layers.view(1, 1, 1, 1, -1))
            score = local.unsqueeze(-1).unsqueeze(-1) - weight * self._block_costs(block)  # [o,k,s,x,L,w,v]
            shape = score.shape[:5]
            best, choice = score.flatten(0, 4).max(dim=0)  # [width, previous]
            total = best + scores.view(1, -1)
            scores, previous = total.max(dim=1)
            scores = scores + lp_w
            choices.append((choice, shape))
            previous_of.append(previous)
        width = int((scores - weight * self.head).argmax())
        indices: list[tuple[int, ...]] = []
        for block in reversed(range(len(self.first))):
            choice, shape = choices[block]
            before = int(previous_of[block][width])
            o, k, s, x, layers = torch.unravel_index(choice[width, before], shape)
            indices.append((int(o), int(k), int(s), int(x), width, int(layers)))
            width = before
        return tuple(i for block in reversed(indices) for i in block)

    def fast_prediction(self):
        """A function: choice indices -> the LUT's prediction (ms), by lookup in the per-block cost
        tables (what `of_indices` gives, without building one-hot tensors: for searches that
        evaluate thousands of architectures)."""
        tables = [self._block_costs(block).tolist() for block in range(len(self.first))]
        head, constant = self.head.tolist(), self.constant

        def predict(indices: Sequence[int]) -> float:
            total, previous = constant, 0
            for block, table in enumerate(tables):
                o, k, s, x, w, layers = indices[_PER_BLOCK * block: _PER_BLOCK * (block + 1)]
                total += table[o][k][s][x][layers][w][previous]
                previous = w
            return total + head[previous]

        return predict


def _layer(block_type: str, expansion: float, kernel: int, se: float, skip: str, stride: int, cin: int, out: int,
           size: int) -> LayerSpec:
    """The LUT's spec of one layer, as `walk_layers` and `network_layers` make it (effective skip)."""
    args = BlockArgs(block_type, 1, kernel, stride, out, expansion, float(se), effective_skip(skip, cin, out, stride))
    return LayerSpec("layer", cin, out, (1, cin, size, size), args)


def check_lut(space: MnasSpace, lut: LatencyLUT) -> None:
    """Refuse a LUT made for another network configuration or input than the space's (one line)."""
    config = space.config
    if lut.config != config.network or lut.resolution != config.resolution:
        raise UserError(f"the latency LUT '{lut.name}' ({lut.where.backend}) is for another network or input "
                        f"({lut.resolution} px, {lut.config.num_classes} classes, {lut.config.in_channels} "
                        f"channels) than this space ({config.resolution} px, {config.network.num_classes} classes, "
                        f"{config.network.in_channels} channels); build the LUT for this space")
    if lut.correction is None:
        raise UserError(f"the latency LUT '{lut.name}' has no end-to-end correction; calibrate it "
                        "(edgenas latency lut build) before a search")
