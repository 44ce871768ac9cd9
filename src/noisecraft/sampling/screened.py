"""Screened validation: a large pool of start paths, with reference solves only where they can change a decision.

A candidate σ list's mean-square error on new noise is carried by rare paths: the 0.1-1 % that end in another
mode of the data under one list and not under another. A validation batch of a few hundred paths holds zero to
two of them, so which named spacing "wins" there is decided by chance (measured on the 24-D cosine benchmark
problem, DPM++3M at 20 steps: powerlog has half the error of the default spacing on each of 32 disjoint batches
of 512 new paths, yet lost to it on the fit's own 512 validation paths, and the fit kept the default).

What costs is the reference solve (``ref_steps`` network calls per path); a candidate's own run costs N calls,
and a path where every candidate ends at the same point adds the same error to each and cannot change a paired
comparison. So ``screen`` runs the candidates on a pool of P paths, measures each path's *spread* (the largest
mean-square distance of a candidate's end point from the first candidate's), enumerates the most spread paths
(stratum A, weight 1) and draws the rest of the validation batch at random from the others (stratum B, each
standing for |B| / n_B pool paths): stratified sampling (Cochran, *Sampling Techniques*, 1977, ch. 5). The
weighted mean is unbiased for the pool mean whatever was screened, and the rare disagreements are counted over
all P paths rather than over the few hundred that get a reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Design:
    """Which pool paths the validation batch holds and how many pool paths each stands for.

    index: (n,) long rows of the pool; weight: (n,) float64, 1 in stratum A and |B|/n_B in stratum B, summing to
    ``pool``; sampled: (n,) bool, the rows drawn from stratum B."""

    index: Tensor
    weight: Tensor
    sampled: Tensor
    pool: int

    @classmethod
    def plain(cls, n: int) -> Design:
        """Every path of a pool of n, weight 1: the ordinary validation batch."""
        return cls(torch.arange(n), torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.bool), n)

    def mean(self, v: Tensor) -> float:
        """Estimate of the pool mean of per-path values v (n,)."""
        return float((self.weight * v.double().cpu()).sum() / self.pool)

    def standard_error(self, d: Tensor) -> float:
        """Standard error of ``mean(d)`` as an estimate of the mean over all start noise: the pool's own sampling
        error (variance of d over the pool / P) plus that of drawing stratum B (with the finite-pool factor)."""
        d = d.double().cpu()
        p = self.pool
        if p < 2:
            return math.inf
        mu = self.mean(d)
        var = float((self.weight * (d - mu) ** 2).sum()) / (p - 1)  # unbiased for a plain batch
        se2 = var / p
        b = self.sampled
        n_b, size_b = int(b.sum()), float(self.weight[b].sum())
        if n_b > 1 and size_b > n_b:
            se2 += (size_b / p) ** 2 * (1 - n_b / size_b) * float(d[b].var()) / n_b
        return math.sqrt(se2)


def screen(
    spreads: Sequence[Tensor],
    n: int,
    generator: torch.Generator,
    enumerated: float = 0.5,
) -> Design:
    """The validation design for a pool: `spreads` holds one (P,) spread per decision (e.g. per step count); the
    top ⌈enumerated·n / len(spreads)⌉ paths of each join stratum A, and the rest of the n rows are drawn without
    replacement from the other paths (stratum B). A pool of at most n paths is taken whole."""
    pool = len(spreads[0])
    if pool <= n:
        return Design.plain(pool)
    k = math.ceil(enumerated * n / len(spreads))
    in_a = torch.zeros(pool, dtype=torch.bool)
    for s in spreads:
        in_a[torch.topk(s.double().cpu(), min(k, pool)).indices] = True
    a = in_a.nonzero().squeeze(1)[: n - 1]  # at least one row of B, so that its weight is defined
    in_a = torch.zeros(pool, dtype=torch.bool)
    in_a[a] = True  # paths cut from A above go back to B, which its weight counts them in
    rest = (~in_a).nonzero().squeeze(1)
    b = rest[torch.randperm(len(rest), generator=generator)[: n - len(a)]]
    weight = torch.cat([torch.ones(len(a)), torch.full((len(b),), (pool - len(a)) / len(b))]).double()
    sampled = torch.cat([torch.zeros(len(a), dtype=torch.bool), torch.ones(len(b), dtype=torch.bool)])
    return Design(torch.cat([a, b]), weight, sampled, pool)


def spread(outputs: Callable[[Tensor], Tensor], lists: Sequence[Tensor]) -> Tensor:
    """(rows,) float64: the largest mean-square distance of a list's output from the first list's, per path.
    `outputs(sigmas)` runs the sampler on the pool rows at hand and returns (rows, ...)."""
    anchor = outputs(lists[0])
    out = torch.zeros(len(anchor), dtype=torch.float64)
    for s in lists[1:]:
        d = (outputs(s) - anchor).double().pow(2).reshape(len(anchor), -1).mean(1).cpu()
        out = torch.maximum(out, torch.where(torch.isfinite(d), d, torch.full_like(d, math.inf)))
    return out
