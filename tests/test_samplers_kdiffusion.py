"""Parity with k-diffusion's samplers (Crowson's reference implementation of Karras et al. 2022 and DPM-Solver++).

The k-diffusion package is installed by scripts/setup.sh with ``--no-deps`` (its __init__ pulls in torchvision,
wandb and more); only its ``sampling.py`` is loaded here, with its one helper from ``utils`` (append_dims)
supplied by the test. Same σ list, same exact Gaussian-mixture denoiser, same start. The one difference from
k-diffusion is a named option of ours, ``dpmpp_3m(compat="k-diffusion")``; DPM++ 2M and 2M-SDE need none (both
step into σ = 0 with first order, and our lower-order final steps only ever lower that step).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from mixture_helpers import rel_err, small_mixture
from noisecraft.core.oracles import GaussianMixture
from noisecraft.sampling.registry import get_sampler

REL = 1e-6


def _append_dims(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.reshape(*x.shape, *([1] * (n - x.ndim)))


@pytest.fixture(scope="module")
def kd() -> types.ModuleType:
    spec = importlib.util.find_spec("k_diffusion")  # locates the package without running its __init__
    assert spec is not None and spec.submodule_search_locations, "k-diffusion missing: run `make setup`"
    folder = Path(next(iter(spec.submodule_search_locations)))
    saved = {k: sys.modules.get(k) for k in ("k_diffusion", "k_diffusion.utils", "k_diffusion.sampling")}
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [str(folder)]
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = _append_dims
    pkg.utils = utils
    sys.modules.update({"k_diffusion": pkg, "k_diffusion.utils": utils})
    try:
        mspec = importlib.util.spec_from_file_location("k_diffusion.sampling", folder / "sampling.py")
        module = importlib.util.module_from_spec(mspec)
        sys.modules["k_diffusion.sampling"] = module
        mspec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


@pytest.fixture(scope="module")
def gm() -> GaussianMixture:
    return small_mixture()


CASES = [  # (k-diffusion function, its kwargs, our sampler, our knobs)
    ("sample_euler", {}, "euler", {}),
    ("sample_heun", {}, "heun", {}),
    ("sample_dpmpp_2m", {}, "dpmpp_2m", {}),
    ("sample_dpmpp_2m_sde", {"eta": 0.0}, "dpmpp_2m_sde", {"eta": 0.0}),
    ("sample_dpmpp_3m_sde", {"eta": 0.0}, "dpmpp_3m", {"compat": "k-diffusion"}),
]


@pytest.mark.parametrize("steps", [6, 12])
@pytest.mark.parametrize(("theirs", "their_kw", "ours", "knobs"), CASES, ids=[c[2] for c in CASES])
def test_matches_k_diffusion(kd, gm, steps, theirs, their_kw, ours, knobs):
    sigmas = kd.get_sigmas_karras(steps, 0.01, 20.0, device="cpu").double()
    x = 20.0 * torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = getattr(kd, theirs)(gm, x.clone(), sigmas, disable=True, **their_kw)
    out = get_sampler(ours)(gm, x, sigmas, **knobs)
    assert rel_err(out, ref) < REL, (ours, rel_err(out, ref))


@pytest.mark.parametrize(
    ("theirs", "their_kw", "ours", "knobs"),
    [
        ("sample_dpmpp_3m_sde", {"eta": 0.0}, "dpmpp_3m", {"compat": "diffusers"}),  # φ2 vs (1−e^{−h})/2, final
        ("sample_dpmpp_3m_sde", {"eta": 0.0}, "dpmpp_3m", {}),  # our default: −2φ3·D2
    ],
)
def test_the_documented_differences_are_real(kd, gm, theirs, their_kw, ours, knobs):
    """Negative controls: without the named option the results differ, so the parity above is not vacuous."""
    sigmas = kd.get_sigmas_karras(8, 0.01, 20.0, device="cpu").double()
    x = 20.0 * torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = getattr(kd, theirs)(gm, x.clone(), sigmas, disable=True, **their_kw)
    assert rel_err(get_sampler(ours)(gm, x, sigmas, **knobs), ref) > 1e-4
