"""Finding adapter factories: installed entry points (`otv.adapters`) or 'module:factory'.

Vendors ship an adapter as a package that declares, in its pyproject.toml,
`[project.entry-points."otv.adapters"] mypvs = "mypvs_otv:create_adapter"`; the gateway then
accepts `plugin = "mypvs"`. A dotted `module:factory` works without packaging, for development.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import cast

from otv_sdk.ports import AdapterFactory

__all__ = ["ENTRY_POINT_GROUP", "available_plugins", "load_factory"]

ENTRY_POINT_GROUP = "otv.adapters"


def available_plugins() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_factory(plugin: str) -> AdapterFactory:
    """Raise LookupError with a helpful message if plugin cannot be found or is not callable."""
    if ":" in plugin:
        module_name, _, attribute = plugin.partition(":")
        try:
            target: object = importlib.import_module(module_name)
        except ImportError as error:
            raise LookupError(f"cannot import module {module_name!r}: {error}") from None
        for part in attribute.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise LookupError(f"module {module_name!r} has no attribute {attribute!r}")
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == plugin]
        if not matches:
            installed = ", ".join(available_plugins()) or "none"
            raise LookupError(f"unknown adapter plugin {plugin!r} (installed: {installed})")
        target = matches[0].load()
    if not callable(target):
        raise LookupError(f"adapter plugin {plugin!r} is not callable")
    return cast(AdapterFactory, target)
