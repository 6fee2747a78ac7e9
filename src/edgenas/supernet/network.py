"""The MnasNet supernet: one network that holds every architecture of an MnasNet space as a path.

Why this shape (single-path one-shot with Once-for-All's elastic dimensions):

- every layer position of the largest configuration (each block at its most layers) holds the
  weights of the block choices at that position, at the widest input and output a path can give
  it; a block with fewer layers skips its trailing positions (depth), a narrower block uses the
  first channels of the widest weights (width), a 3x3 kernel is the centre of the 5x5 (kernel);
- `sharing="shared"` keeps one set of weights per ConvOp kind (regular conv, depthwise separable,
  inverted bottleneck) at each position: an MBConv3 is the first half of the MBConv6's expansion,
  a block without squeeze-excite leaves the SE weights out. Each weight is trained by many more
  of the paths than with separate weights, which matters when the supernet trains for minutes on
  a CPU, not days on TPUs. `sharing="separate"` gives every op x kernel x SE choice weights of its
  own (single-path one-shot's original form); which ranks better is measured in
  docs/bench/supernet.md;
- a path runs through the project's own blocks: the network of the architecture is built once
  on the meta device (`space.build`, no memory, no initialisation) and called with views of the
  supernet's tensors (`torch.func.functional_call`), so the supernet and a stand-alone network of
  the same string cannot compute different things, and gradients reach the shared weights through
  the views. `extract` copies the same views into a real network.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from edgenas.blocks import ConvBnAct
from edgenas.errors import UserError
from edgenas.spaces.blockstrings import BlockArgs
from edgenas.spaces.mnas import MnasSpace, op_to_block
from edgenas.spaces.mobilenet import MobileNet, make_layer, walk_layers

SHARING_MODES = ("shared", "separate")


@dataclass(frozen=True)
class Position:
    """One layer position of the largest configuration: its block, its index in the block, its
    stride, and the widest input and output any path gives it."""

    stage: int
    index: int
    stride: int
    max_in: int
    max_out: int


def _body_key(block_type: str, expansion: float, kernel: int, se_ratio: float, sharing: str) -> str:
    """Which weights of a position a layer uses (a ModuleDict key: no dots)."""
    if sharing == "shared":
        return block_type
    return f"{block_type}_e{expansion:g}_k{kernel}_se{se_ratio:g}".replace(".", "p")


@dataclass(frozen=True)
class _Path:
    """A path's meta-device network and, per tensor name, (the supernet tensor, the shape it takes)."""

    skeleton: MobileNet
    sources: dict[str, tuple[str, torch.Size]]


class SuperLayer(nn.Module):
    """The weights of one position: a body per key, and the pooling skip's projection (shared by
    every body) where a path can change width at this position."""

    def __init__(self, bodies: dict[str, nn.Module], skip_project: nn.Module | None) -> None:
        super().__init__()
        self.bodies = nn.ModuleDict(bodies)
        self.skip_project = skip_project


class Supernet(nn.Module):
    """Stem, the positions' weights, head and classifier of an MnasNet space; paths through it."""

    def __init__(self, space: MnasSpace, sharing: str = "shared", cache_size: int = 64) -> None:
        super().__init__()
        if sharing not in SHARING_MODES:
            raise UserError(f"unknown weight sharing '{sharing}'; choose one of {', '.join(SHARING_MODES)}")
        self.space = space
        self.sharing = sharing
        config = space.config
        net = config.network
        self.stem = ConvBnAct(net.in_channels, net.stem_channels, 3, net.stem_stride, act=net.act, norm=net.norm)
        self.positions: list[Position] = []
        self.offsets: list[int] = []  # the first position of each block
        layers = []
        previous_widths = [net.stem_channels]
        for stage, base in enumerate(config.base_stages):
            widths = [space.width(base, w) for w in config.width_multipliers]
            depth = base.repeats + max(space.block_decisions(stage)[5].choices)
            self.offsets.append(len(self.positions))
            for index in range(depth):
                inputs = previous_widths if index == 0 else widths
                position = Position(stage, index, base.stride if index == 0 else 1, max(inputs), max(widths))
                self.positions.append(position)
                changes_width = any(i != o for i in inputs for o in widths)
                layers.append(self._make_layer(position, changes_width))
            previous_widths = widths
        self.layers = nn.ModuleList(layers)
        self.head = ConvBnAct(max(previous_widths), net.head_channels, 1, act=net.act, norm=net.norm)
        self.dropout = nn.Dropout(net.dropout)
        self.classifier = nn.Linear(net.head_channels, net.num_classes)
        self._paths: OrderedDict[str, _Path] = OrderedDict()
        self._cache_size = cache_size

    # ---- construction -----------------------------------------------------------------------
    def _make_layer(self, position: Position, changes_width: bool) -> SuperLayer:
        config = self.space.config
        bodies: dict[str, nn.Module] = {}
        for block_type, expansion, kernel, se in self._body_shapes():
            args = BlockArgs(block_type, 1, kernel, position.stride, position.max_out,
                             expansion=expansion, se_ratio=float(se), skip="none")
            bodies[_body_key(block_type, expansion, kernel, se, self.sharing)] = \
                make_layer(args, position.max_in, position.stride, config.network).body
        project = None
        if changes_width and "pool" in config.skips:
            project = ConvBnAct(position.max_in, position.max_out, 1, act=None, norm=config.network.norm)
        return SuperLayer(bodies, project)

    def _body_shapes(self) -> list[tuple[str, float, int, float]]:
        """(block type, expansion, kernel, SE ratio) of each weight set a position holds: every
        op x kernel x SE choice with separate weights; with shared weights one per ConvOp kind, at
        the widest of its elastic dimensions (largest expansion of the kind, kernel and SE ratio)."""
        config = self.space.config
        kinds = [op_to_block(op) for op in config.ops]
        if self.sharing == "separate":
            return [(kind, expansion, kernel, float(se)) for kind, expansion in kinds
                    for kernel in config.kernels for se in config.se_ratios]
        widest: dict[str, float] = {}
        for kind, expansion in kinds:
            widest[kind] = max(expansion, widest.get(kind, expansion))
        return [(kind, expansion, max(config.kernels), float(max(config.se_ratios))) for kind, expansion in widest.items()]

    # ---- paths ------------------------------------------------------------------------------
    def blocks(self, arch: str | Sequence[BlockArgs]) -> list[BlockArgs]:
        """The blocks of `arch`, checked to lie in the supernet's space (UserError naming the field)."""
        if isinstance(arch, str):
            return self.space.parse(arch)
        return self.space.blocks_from_indices(self.space.indices_from_blocks(list(arch)))

    def path_sources(self, blocks: Sequence[BlockArgs]) -> dict[str, str]:
        """For each parameter and buffer name of the path's stand-alone network, the name of the
        supernet tensor it is a view of."""
        return {name: source for name, (source, _shape) in self._path(blocks).sources.items()}

    def path_tensors(self, arch: str | Sequence[BlockArgs]) -> dict[str, torch.Tensor]:
        """The path's parameters and buffers as views of the supernet's (gradients flow back)."""
        blocks = self.blocks(arch) if isinstance(arch, str) else list(arch)
        own = self._tensors()
        return {name: _crop(own[source], shape) for name, (source, shape) in self._path(blocks).sources.items()}

    def skeleton(self, blocks: Sequence[BlockArgs]) -> MobileNet:
        """The path's stand-alone network on the meta device (shapes only), cached by string."""
        return self._path(blocks).skeleton

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The supernet's parameters and buffers by name, as they are now (`to()` replaces buffers)."""
        own = dict(self.named_parameters())
        own.update(self.named_buffers())
        return own

    def _path(self, blocks: Sequence[BlockArgs]) -> _Path:
        """What a path needs besides the weights, worked out once per architecture (LRU cache): its
        meta-device network, and for each of its tensors the supernet tensor and the shape it takes."""
        from edgenas.spaces.blockstrings import encode_arch

        key = encode_arch(list(blocks))
        path = self._paths.get(key)
        if path is not None:
            self._paths.move_to_end(key)
            return path
        with torch.device("meta"):
            skeleton = self.space.build(list(blocks))
        positions: dict[tuple[int, int], tuple[int, str]] = {}
        index_in_stage: dict[int, int] = {}
        for layer in walk_layers(blocks, self.space.config.network):
            j = index_in_stage.get(layer.stage, 0)
            index_in_stage[layer.stage] = j + 1
            a = layer.args
            positions[(layer.stage, j)] = (self.offsets[layer.stage] + j,
                                           _body_key(a.block_type, a.expansion, a.kernel, a.se_ratio, self.sharing))
        sources: dict[str, tuple[str, torch.Size]] = {}
        for name, tensor in list(skeleton.named_parameters()) + list(skeleton.named_buffers()):
            parts = name.split(".")
            source = name
            if parts[0] == "stages":
                position, key_ = positions[(int(parts[1]), int(parts[2]))]
                if parts[3] == "body":
                    source = f"layers.{position}.bodies.{key_}.{'.'.join(parts[4:])}"
                else:  # skip.project.<...>: the pooling skip's projection
                    source = f"layers.{position}.skip_project.{'.'.join(parts[5:])}"
            sources[name] = (source, tensor.shape)
        path = _Path(skeleton, sources)
        self._paths[key] = path
        if len(self._paths) > self._cache_size:
            self._paths.popitem(last=False)
        return path

    def forward_path(self, arch: str | Sequence[BlockArgs], images: torch.Tensor) -> torch.Tensor:
        """The logits of one path: its stand-alone network run on views of the supernet's weights.
        BatchNorm in training mode updates the supernet's running statistics through the views."""
        blocks = self.blocks(arch) if isinstance(arch, str) else list(arch)
        skeleton = self._path(blocks).skeleton
        skeleton.train(self.training)
        return functional_call(skeleton, self.path_tensors(blocks), (images,))

    def extract(self, arch: str | Sequence[BlockArgs]) -> MobileNet:
        """The path as a stand-alone network with its inherited weights copied in (for fine-tuning,
        export, or scoring): `space.build(arch)` with the supernet's views loaded."""
        blocks = self.blocks(arch) if isinstance(arch, str) else list(arch)
        device = next(self.parameters()).device
        with torch.device("meta"):
            model = self.space.build(blocks)
        model = model.to_empty(device=device)
        model.load_state_dict({name: t.detach() for name, t in self.path_tensors(blocks).items()})
        return model

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - paths only
        raise TypeError("a supernet has no forward of its own; call forward_path(arch, images)")


def _crop(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A view of `tensor` with `shape`: the leading slice of channel dimensions, the centre of a
    convolution kernel's spatial ones (a 3x3 inside a 5x5)."""
    if tensor.shape == shape:
        return tensor
    index = []
    for dim, (have, want) in enumerate(zip(tensor.shape, shape)):
        if want > have:
            raise RuntimeError(f"a path needs {tuple(shape)} from a supernet tensor of {tuple(tensor.shape)}")
        if tensor.dim() == 4 and dim >= 2:
            start = (have - want) // 2
            index.append(slice(start, start + want))
        else:
            index.append(slice(0, want))
    return tensor[tuple(index)]
