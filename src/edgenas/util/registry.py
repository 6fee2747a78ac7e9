"""The one registry style: a plain dict from name to factory, and one lookup that names the choices.

Why dicts and not registration on import: reading the dict is reading every choice there is, no
import order decides what exists, and an unknown name gets the same one-line error everywhere
("unknown latency backend 'x'; choose one of ..."). `lazy` keeps heavy optional dependencies
(LiteRT, Ray, torch in the measuring subprocess) unloaded until their factory is called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from edgenas.errors import UserError

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, what: str, error: type[UserError] = UserError) -> T:
    """`registry[name]`, or `error` (a UserError) naming what was asked for and every valid name."""
    try:
        return registry[name]
    except KeyError:
        raise error(f"unknown {what} '{name}'; choose one of {', '.join(registry)}") from None


class lazy:  # noqa: N801 - used like a function in registry literals
    """A factory that imports `module` and calls its `attribute` only when first called."""

    def __init__(self, module: str, attribute: str) -> None:
        self.module = module
        self.attribute = attribute

    def resolve(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"lazy({self.module}.{self.attribute})"
