"""noisecraft.sampling: stateless samplers in one registry (``registry.py``), step schedules, inversion.

Importing the package imports every sampler family, so the registry is complete before any name is looked up:
one-step samplers (``samplers.py``), multistep exponential integrators (``multistep.py``), the adaptive ODE
solver (``adaptive.py``) and the score-based samplers (``langevin.py``).
"""

from noisecraft.sampling import adaptive, gauss_pc, langevin, multistep, samplers, solver_fit  # noqa: F401  (they register)
from noisecraft.sampling.registry import SAMPLERS, get_sampler, iterate, sampler_knobs

__all__ = ["SAMPLERS", "get_sampler", "iterate", "sampler_knobs"]
