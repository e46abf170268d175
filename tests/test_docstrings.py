"""Every public method of the public classes says what it does (``help()`` shows it)."""

from __future__ import annotations

import inspect
from types import ModuleType

import aiostream_engine
import aiostream_engine.pyspark
import aiostream_engine.pyspark.streaming
import aiostream_engine.sinks
import aiostream_engine.testing

PUBLIC_MODULES: list[ModuleType] = [
    aiostream_engine,
    aiostream_engine.pyspark,
    aiostream_engine.pyspark.streaming,
    aiostream_engine.sinks,
    aiostream_engine.testing,
]


def public_classes() -> list[type]:
    classes: list[type] = []
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) and value.__module__.startswith("aiostream_engine"):
                classes.append(value)
    return list(dict.fromkeys(classes))


def undocumented(cls: type) -> list[str]:
    """Public methods and properties of ``cls`` (its own and inherited from the engine's
    classes) whose documentation, as ``inspect.getdoc`` finds it, is empty."""
    missing = []
    for name, _ in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        static = inspect.getattr_static(cls, name)
        owner = next((c for c in cls.__mro__ if name in vars(c)), None)
        if owner is None or not owner.__module__.startswith("aiostream_engine"):
            continue
        if isinstance(static, property | classmethod | staticmethod) or inspect.isfunction(static):
            # a property's own object: inspect finds a base class's documentation for it
            target = static if isinstance(static, property) else getattr(cls, name)
            if not inspect.getdoc(target):
                missing.append(f"{owner.__qualname__}.{name}")
    return missing


def test_public_methods_have_docstrings() -> None:
    missing = sorted({m for cls in public_classes() for m in undocumented(cls)})
    assert missing == [], f"{len(missing)} public methods without a docstring: {missing}"
