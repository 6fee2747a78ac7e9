"""Search spaces by name: a dict of factories, and `get_space` / `fitted_space` that build one."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from edgenas.errors import UserError
from edgenas.spaces.base import Decision, SearchSpace
from edgenas.util.registry import lazy, lookup

# name -> factory; imported on first use so that `import edgenas.spaces` stays cheap and free of cycles.
SPACES: dict[str, Callable[..., SearchSpace]] = {
    "darts": lazy("edgenas.spaces.darts", "DartsSpace"),
    "mnas": lazy("edgenas.spaces.mnas", "make_mnas_space"),
    "nb201": lazy("edgenas.spaces.nb201", "NB201Space"),
}


def space_names() -> list[str]:
    return sorted(SPACES)


def space_options(name: str) -> set[str] | None:
    """The keyword options a space's factory accepts (None: it takes any), so a caller can pass a
    dataset's resolution, channels and classes to the spaces that use them and not to the others."""
    factory = SPACES.get(name)
    if factory is None:
        return None
    target = factory.resolve() if isinstance(factory, lazy) else factory
    parameters = inspect.signature(target).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def get_space(name: str, **config: Any) -> SearchSpace:
    """The search space called `name`, configured by keyword arguments."""
    return lookup(SPACES, name, "search space")(**config)


def fitted_space(name: str, shape: tuple[int, int, int], num_classes: int, **config: Any) -> SearchSpace:
    """The space `name` fitted to images of `shape` (C, H, W) and `num_classes`: resolution, input
    channels and classes go to the spaces whose factory takes them; `config` overrides."""
    c, h, w = shape
    if h != w:
        raise UserError(f"images of {h}x{w} are not square; the {name} space needs square images "
                        "(folder: datasets take --image-size)")
    derived = {"resolution": h, "num_classes": num_classes, "in_channels": c}
    lookup(SPACES, name, "search space")
    accepted = space_options(name)
    options = {k: v for k, v in derived.items() if accepted is None or k in accepted}
    return get_space(name, **{**options, **config})


__all__ = ["SPACES", "Decision", "SearchSpace", "fitted_space", "get_space", "space_names", "space_options"]
