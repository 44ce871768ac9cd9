"""Typed configs from plain dicts (parsed JSON): the one place that turns a mapping into a config dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from noisecraft.errors import NoisecraftError

T = TypeVar("T")


def config_from_dict(cls: type[T], d: Any, what: str) -> T:
    """``cls(**d)`` for a dataclass `cls`; a non-mapping or an unknown key is a one-line error naming the
    valid keys (`what` names the config in the message, e.g. "model")."""
    if not isinstance(d, dict):
        raise NoisecraftError(f"{what} config must be a mapping, got {type(d).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise NoisecraftError(f"unknown {what} config key(s) {', '.join(unknown)}; valid keys: {', '.join(names)}")
    return cls(**d)
