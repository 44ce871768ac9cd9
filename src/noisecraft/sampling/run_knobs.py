"""Sampler knobs that come from a trained run rather than from the user: one place, so that `sample`, `eval`
and the studio draw the same images from the same seeds.

- a sampler with a `stats` knob (gauss_pc) gets the run's data statistics (``data_stats.run_data_stats``);
- ``fitted_ms`` gets the weights ``noisecraft samplers --fit RUN --solver`` fitted for that step count
  (RUN/fitted_solver.json, sampling/solver_fit.py), with the σ list they belong to.
"""

from __future__ import annotations

from pathlib import Path

from noisecraft.errors import NoisecraftError


def run_sampler_knobs(sampler: str, run: str | Path, steps: int | None = None, cfg=None) -> dict:
    """The knobs `sampler` takes from the run (empty for most samplers)."""
    from noisecraft.sampling.samplers import sampler_knobs

    knobs = sampler_knobs(sampler)
    out: dict = {}
    if "stats" in knobs:
        from noisecraft.sampling.data_stats import run_data_stats

        out["stats"] = run_data_stats(run, cfg)
    if "fitted_for" in knobs:
        from noisecraft.sampling.solver_fit import SOLVER_FILE, load_solvers

        path = Path(run) / SOLVER_FILE
        if not path.is_file():
            raise NoisecraftError(f"{sampler} needs weights fitted to the run: `noisecraft samplers --fit {run} "
                                  f"--solver` writes {path}")  # fmt: skip
        solvers = load_solvers(path)
        if steps not in solvers:
            raise NoisecraftError(f"{path} has fitted weights for {sorted(solvers)} steps, not {steps}; use one of "
                                  "them or fit again with --steps")  # fmt: skip
        out.update(solvers[steps].knobs())
    return out
