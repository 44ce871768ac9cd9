"""The sampler registry (sampling/registry.py): one place, complete on any import, the defs keep their signatures."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

from noisecraft.core.oracles import GaussianMixture
from noisecraft.core.schedules import make_schedule
from noisecraft.sampling.steps import step_sigmas


def blobs(dim: int, seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 0.6 * torch.randn(8, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(means, 0.01 + 0.2 * torch.rand(8, dim, generator=g, dtype=torch.float64))


@pytest.mark.parametrize(
    "module",
    [
        "noisecraft.sampling.samplers",
        "noisecraft.sampling.multistep",
        "noisecraft.sampling.registry",
        "noisecraft.sampling.adaptive",
    ],
)
def test_registry_is_complete_whichever_module_is_imported_first(module):
    code = f"import {module}; from noisecraft.sampling.registry import SAMPLERS; print(sorted(SAMPLERS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("euler", "heun", "ddim", "ddpm", "dpmpp_2m", "dpmpp_3m", "unipc", "adaptive", "langevin", "pc"):
        assert f"'{name}'" in out, (module, out)


def test_register_keeps_the_def_and_its_signature():
    from noisecraft.sampling import multistep, samplers
    from noisecraft.sampling.registry import SAMPLER_SPECS, get_sampler

    assert SAMPLER_SPECS["unipc"].stepper is multistep.unipc
    assert list(inspect.signature(multistep.unipc).parameters)[:4] == ["model", "x", "sigmas", "generator"]
    assert SAMPLER_SPECS["euler"].stepper is samplers.euler and inspect.isgeneratorfunction(samplers.euler)
    assert get_sampler("euler").__name__ == "sample_euler"
    assert not hasattr(samplers, "sample_euler") and not hasattr(samplers, "sample_ddpm")  # 0.1.0 aliases gone


def test_regenerate_says_that_a_multistep_sampler_runs_first_order():
    """unipc (a multistep sampler without an upward rule) is stepped one pair of levels per call, and a warning
    says so; dpmpp_2m/3m keep their history (sampling.inversion), so they run as the sampler and do not warn."""
    import warnings

    from noisecraft.sampling.inversion import invert, regenerate
    from noisecraft.sampling.registry import get_sampler

    gm, sch = blobs(4, 1), make_schedule("edm")
    sig = step_sigmas(sch, 6, "karras")
    z = sch.sigma_max * torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.warns(UserWarning, match="multistep sampler.*first-order"):
        a = regenerate(gm, z, sig, sampler="unipc")
    ref = z
    for i in range(len(sig) - 1):
        ref = get_sampler("unipc")(gm, ref, sig[i : i + 2])
    torch.testing.assert_close(a, ref)  # what it actually ran
    with pytest.warns(UserWarning, match="multistep"):
        invert(gm, a, sig, sampler="unipc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(regenerate(gm, z, sig, sampler="dpmpp_2m"), get_sampler("dpmpp_2m")(gm, z, sig))
