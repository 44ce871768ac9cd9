"""The one learning-rate schedule of every training loop: linear warm-up, then cosine decay.

Warm-up as in Goyal et al. 2017 ("Accurate, Large Minibatch SGD"), cosine decay as in Loshchilov & Hutter
2017 ("SGDR"), without restarts. Used by the main trainer (training/loop.py through training/setup.lr_at), the
2-D toy loop (training/toy.py) and the shared loop core of the noisy-classifier and autoencoder trainers
(training/core.py).
"""

from __future__ import annotations

import math


def warmup_cosine(
    step: int, peak: float, total_steps: int, warmup_steps: int, min_ratio: float = 0.0, decay: str = "cosine"
) -> float:
    """The learning rate of optimiser step `step` (0-based).

    Linear warm-up peak·(step + 1)/warmup_steps over the first `warmup_steps` steps, then (decay "cosine") a
    half cosine from `peak` down to min_ratio·peak at step `total_steps` (held there after it), or (decay
    "constant") `peak`. A pure function of the step, so a resumed run sets the same rates.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if decay == "constant":
        return peak
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    ratio = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return peak * ratio
