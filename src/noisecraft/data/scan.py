"""Pre-flight scan: decode every image once before training and report the bad ones by path.

A run that would die hours in on file 51 234 instead fails (or warns) in the first minute, naming the files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from noisecraft.data.transforms import BadImage, open_image
from noisecraft.errors import NoisecraftError


@dataclass
class ScanReport:
    """Result of a scan: the usable paths, and (path, reason) for every bad one."""

    good: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.good) + len(self.bad)

    @property
    def bad_fraction(self) -> float:
        return len(self.bad) / max(self.total, 1)

    def summary(self, limit: int = 10) -> str:
        lines = [f"scanned {self.total} files: {len(self.good)} good, {len(self.bad)} bad"]
        lines += [f"  bad: {path}: {reason}" for path, reason in self.bad[:limit]]
        if len(self.bad) > limit:
            lines.append(f"  ... and {len(self.bad) - limit} more")
        return "\n".join(lines)


def scan_images(paths: Sequence[str | os.PathLike], max_pixels: int = 64_000_000) -> ScanReport:
    """Open and decode each file once (allow-listed formats, pixel limit); sort them into good and bad."""
    report = ScanReport()
    for path in paths:
        try:
            open_image(path, max_pixels).close()
            report.good.append(str(path))
        except BadImage as e:
            report.bad.append((str(path), str(e)))
    return report


def check_bad_fraction(n_bad: int, n_total: int, max_bad_fraction: float, where: str, example: str = "") -> None:
    """Raise a one-line NoisecraftError when more than `max_bad_fraction` of the files are unusable."""
    if n_total and n_bad / n_total > max_bad_fraction:
        hint = f" (e.g. {example})" if example else ""
        raise NoisecraftError(
            f"{n_bad} of {n_total} images in {where} are unreadable{hint}, more than max_bad_fraction="
            f"{max_bad_fraction}; fix or remove them (scan=True lists them all) or raise max_bad_fraction"
        )
