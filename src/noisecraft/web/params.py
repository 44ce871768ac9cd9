"""Reading the page's JSON into checked values: every bad field becomes a one-line NoisecraftError that says
what to fix (the page shows it), never a traceback."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Any

from noisecraft.errors import NoisecraftError

MAX_SEED = 2**63 - 1
MAX_UPLOAD_BYTES = 12_000_000  # one uploaded image


class Params:
    """Typed access to a request's fields with bounds; missing or empty fields take the default."""

    def __init__(self, data: Any):
        if not isinstance(data, dict):
            raise NoisecraftError("the request must be a JSON object")
        self.data = data

    def _raw(self, name: str) -> Any:
        v = self.data.get(name)
        return None if v is None or (isinstance(v, str) and not v.strip()) else v

    def int(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        v = self._raw(name)
        if v is None:
            return default
        try:
            f = float(v)
            if not math.isfinite(f) or f != int(f):
                raise ValueError
            n = int(f)
        except (TypeError, ValueError):
            raise NoisecraftError(f"{name} must be a whole number, got {v!r}") from None
        if not lo <= n <= hi:
            raise NoisecraftError(f"{name} must lie in [{lo}, {hi}], got {n}")
        return n

    def float(self, name: str, default: float | None, lo: float, hi: float) -> float | None:
        v = self._raw(name)
        if v is None:
            return default
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise NoisecraftError(f"{name} must be a number, got {v!r}") from None
        if not math.isfinite(f) or not lo <= f <= hi:
            raise NoisecraftError(f"{name} must be a number in [{lo:g}, {hi:g}], got {v!r}")
        return f

    def str(self, name: str, default: str | None = None) -> str | None:
        v = self._raw(name)
        if v is None:
            return default
        if not isinstance(v, str):
            raise NoisecraftError(f"{name} must be text, got {v!r}")
        return v.strip()

    def text(self, name: str) -> str | None:
        """Free text kept as typed (a prompt: not stripped); None when missing or only blanks."""
        v = self.data.get(name)
        if v is not None and not isinstance(v, str):
            raise NoisecraftError(f"{name} must be text, got {v!r}")
        return v if v and v.strip() else None

    def choice(self, name: str, default: str | None, choices: Iterable[str]) -> str | None:
        v = self.str(name, default)
        choices = list(choices)
        if v is not None and v not in choices:
            raise NoisecraftError(f"unknown {name} {v!r}; choose one of: {', '.join(choices)}")
        return v

    def bool(self, name: str) -> bool:
        return bool(self.data.get(name))

    def seed(self, name: str = "seed") -> int:
        """A seed >= 0, or "random"/-1: a fresh one (returned, so the result can be reproduced)."""
        v = self._raw(name)
        if v is None or v == "random" or v == -1 or v == "-1":
            return random.randrange(0, 2**31)
        return self.int(name, 0, 0, MAX_SEED)

    def interval(self, name: str) -> str | None:
        """A σ interval "lo,hi" with 0 <= lo < hi (the CLI's --cfg-interval form)."""
        v = self.str(name)
        if v is None:
            return None
        try:
            lo, hi = (float(p) for p in v.split(","))
        except ValueError:
            raise NoisecraftError(f"{name} must be two numbers 'lo,hi', e.g. 0.3,5; got {v!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise NoisecraftError(f"{name} needs 0 <= lo < hi, got {v!r}")
        return f"{lo:g},{hi:g}"
