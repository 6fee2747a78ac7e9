"""Search spaces by name. Each space registers a factory here; `get_space` builds one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgenas.errors import UserError
from edgenas.spaces.base import Decision, SearchSpace

_FACTORIES: dict[str, Callable[..., SearchSpace]] = {}


def register_space(name: str, factory: Callable[..., SearchSpace]) -> None:
    _FACTORIES[name] = factory


def _load_builtin() -> None:
    # Imported lazily so that `import edgenas.spaces` stays cheap and free of cycles.
    import edgenas.spaces.darts  # noqa: F401
    import edgenas.spaces.nb201  # noqa: F401
    from edgenas.spaces import mnas  # noqa: F401


def space_names() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)


def space_options(name: str) -> set[str] | None:
    """The keyword options a space's factory accepts (None: it takes any), so a caller can pass a
    dataset's resolution, channels and classes to the spaces that use them and not to the others."""
    import inspect

    _load_builtin()
    factory = _FACTORIES.get(name)
    if factory is None:
        return None
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def get_space(name: str, **config: Any) -> SearchSpace:
    """The search space called `name`, configured by keyword arguments."""
    _load_builtin()
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise UserError(
            f"unknown search space '{name}'; choose one of {', '.join(sorted(_FACTORIES))}"
        ) from None
    return factory(**config)


__all__ = ["Decision", "SearchSpace", "get_space", "register_space", "space_names", "space_options"]
