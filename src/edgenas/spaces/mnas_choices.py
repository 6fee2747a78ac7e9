"""The MnasNet space as users configure it: named presets and `KEY=VALUES` overrides of its choice lists.

Space presets (`--space-preset`): `full` is the MnasNet space at the dataset's resolution; `demo`
is a narrowed one (4 blocks, the first strided, 3 ops, 2 kernels, 2 widths) in which a candidate
proxy-trains in seconds on a CPU. `--space-option KEY=VALUES` overrides one choice list, e.g.
`kernels=3,5`, `ops=dsconv,mbconv6`, `stages=c16_r1_s2,c24_r2_s2` (base channels, repeats,
stride of each block). The JSON form (`space_choices`) is what a run records, so that resuming
with another space is refused; `mnas_space_for` turns it into the space, fitted to a dataset.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from edgenas.errors import UserError
from edgenas.spaces.mnas import BaseStage, MnasSpace

if TYPE_CHECKING:
    from edgenas.data import ImageDataset

SPACE_PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "demo": {
        "ops": ["dsconv", "mbconv3", "mbconv6"],
        "kernels": [3, 5],
        "se_ratios": [0.0, 0.25],
        "skips": ["none", "identity"],
        "width_multipliers": [0.5, 1.0],
        "layer_deltas": [-1, 0, 1],
        "stages": ["c16_r1_s2", "c24_r2_s2", "c40_r2_s2", "c80_r2_s1"],
    },
}
# Choice lists `--space-option` may set, and how each item is read.
CHOICE_TYPES: dict[str, type] = {
    "ops": str, "kernels": int, "se_ratios": float, "skips": str,
    "width_multipliers": float, "layer_deltas": int, "stages": str,
}
_STAGE = re.compile(r"^c(\d+)_r(\d+)_s([12])$")


def parse_space_option(item: str) -> tuple[str, list[Any]]:
    """`KEY=V1,V2,...` -> (key, typed values); a bad key or value is a UserError naming the fix."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or key not in CHOICE_TYPES:
        raise UserError(f"--space-option '{item}' is not KEY=V1,V2 with KEY one of {', '.join(CHOICE_TYPES)}; "
                        "e.g. --space-option kernels=3,5")
    kind = CHOICE_TYPES[key]
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise UserError(f"--space-option '{item}' lists no values; e.g. {key}=...,...")
    try:
        return key, [kind(v) for v in values]
    except ValueError:
        raise UserError(f"--space-option '{item}': every value of {key} must be a {kind.__name__}") from None


def space_choices(preset: str = "full", overrides: list[str] | None = None) -> dict[str, Any]:
    """The JSON form of a space's choice lists: a preset with `KEY=VALUES` overrides applied."""
    if preset not in SPACE_PRESETS:
        raise UserError(f"unknown space preset '{preset}'; choose one of {', '.join(SPACE_PRESETS)}")
    choices = {k: list(v) for k, v in SPACE_PRESETS[preset].items()}
    for item in overrides or []:
        key, values = parse_space_option(item)
        choices[key] = values
    return choices


def parse_stage(text: str) -> BaseStage:
    match = _STAGE.match(text)
    if not match:
        raise UserError(f"stage '{text}' is not c<channels>_r<repeats>_s<1|2>; e.g. c24_r2_s2")
    channels, repeats, stride = (int(g) for g in match.groups())
    if channels < 1 or repeats < 1:
        raise UserError(f"stage '{text}' needs at least 1 channel and 1 repeat")
    return BaseStage(channels, repeats, stride)


def space_options_from_choices(choices: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the mnas space factory for JSON choices (tuples, BaseStage)."""
    options: dict[str, Any] = {}
    for key, values in choices.items():
        if key == "stages":
            options["base_stages"] = tuple(parse_stage(v) for v in values)
        else:
            options[key] = tuple(values)
    return options


def mnas_space_for(dataset: ImageDataset, choices: dict[str, Any]) -> MnasSpace:
    """The MnasNet space with these choice lists, fitted to `dataset`'s resolution, channels and classes."""
    from edgenas.spaces import fitted_space

    space = fitted_space("mnas", dataset.shape, dataset.num_classes, **space_options_from_choices(choices))
    assert isinstance(space, MnasSpace)
    return space
