"""Lazy package attributes (PEP 562): a package names what its heavy modules export, and each is
imported on first use, so that importing the package's light parts (registries read by the
config and the commands' ``--help``) does not load torch."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(
    package: str, exports: dict[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, and the lazy names (for ``__all__``):
    ``exports`` maps each heavy module to the names the package takes from it."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(where))

    return __getattr__, __dir__, list(where)
