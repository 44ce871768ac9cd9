"""How far step placement alone can go: schedules fitted on the held-out paths themselves (an upper bound).

    OMP_NUM_THREADS=1 python benchmarks/samplers_bound.py            # the four (problem, NFE) cells of issue 12
    OMP_NUM_THREADS=1 python benchmarks/samplers_bound.py --cells "16-D, DDPM cosine:5"

For each cell it runs, on the same 1024 held-out start noises and exact PF-ODE references as
benchmarks/samplers.py, the best start of ``sampling.fit`` (every named spacing and the powerlog family) and then
its coordinate search (10 sweeps, no step-ratio cap) with the *held-out error itself* as the objective. No
schedule fitted on other noise is likely to do better on these paths with the same sampler, so a bound above 0.5×
diffusers' best (rms, from the main benchmark, given here) means the target needs a better solver, not a better
schedule.
"""

from __future__ import annotations

import argparse
import math

import torch

from noisecraft.core.schedules import make_schedule
from noisecraft.sampling import fit as F

try:
    from samplers import PROBLEMS, Reference, mixture
except ImportError:  # run from the repository root
    from benchmarks.samplers import PROBLEMS, Reference, mixture

# diffusers' best rms in benchmarks/results/samplers.md (the denominators of the targets)
THEIRS = {
    ("16-D, DDPM cosine", 5): 0.1277,
    ("16-D, DDPM cosine", 10): 0.0414,
    ("64-D, DDPM linear", 5): 0.1950,
    ("8-D, scaled linear", 5): 0.1039,
}
SAMPLERS = (("unipc", {}), ("unipc", {"order": 3}), ("dpmpp_3m", {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default=None, help='";"-separated "problem:NFE" (default: the four of issue 12)')
    ap.add_argument("--paths", type=int, default=1024)
    ap.add_argument("--sweeps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cells = list(THEIRS)
    if args.cells:
        cells = [(c.rsplit(":", 1)[0], int(c.rsplit(":", 1)[1])) for c in args.cells.split(";")]
    print(
        "| problem | NFE | sampler | best start (held-out) | bound: refined on held-out | ÷ diffusers' best | σ list |"
    )
    print("|---|---|---|---|---|---|---|")
    for problem, nfe in cells:
        dim, seed, schedule_name = PROBLEMS[problem]
        gm, sch = mixture(dim, seed), make_schedule(schedule_name)
        eps = torch.randn(args.paths, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        x, ref = sch.sigma_max * eps, Reference(gm, eps)(sch.sigma_max)
        for sampler, knobs in SAMPLERS:
            prob = F._Problem.on_reference(gm, x, ref, None, sampler, knobs)
            starts = [s for k in F.NAMED if (s := F._named(sch, nfe, k)) is not None] + F._family(sch, nfe)
            errs = [prob.err(s) for s in starts]
            i = min(range(len(starts)), key=errs.__getitem__)
            refined, e = F._refine(prob, starts[i], math.log(sch.sigma_min), args.sweeps, omega=math.inf)
            theirs = THEIRS.get((problem, nfe), math.nan)
            name = sampler + ("3" if knobs.get("order") == 3 else "")
            sig = " ".join(f"{v:.3g}" for v in refined.tolist())
            print(f"| {problem} | {nfe} | {name} | {errs[i]:.4f} | {e:.4f} | {e / theirs:.2f} | {sig} |", flush=True)


if __name__ == "__main__":
    main()
