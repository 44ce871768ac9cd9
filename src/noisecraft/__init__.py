"""noisecraft: a toolkit for building diffusion models.

The public API is flat and imported lazily (so the command line starts instantly):

    import noisecraft as nc
    schedule = nc.make_schedule("cosine")
    model = nc.PreconditionedDenoiser(net, nc.Preconditioner("v", noise_input="t", schedule=schedule))
    loss = nc.DenoisingLoss(schedule, weighting="min_snr")(model, x0).mean()
    x = nc.sample_ddpm(model, schedule.sigma_max * torch.randn(16, 2), schedule.sample_sigmas(50))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # core: schedules
    "Schedule": "noisecraft.core.schedules",
    "DiscreteVP": "noisecraft.core.schedules",
    "VPContinuous": "noisecraft.core.schedules",
    "VE": "noisecraft.core.schedules",
    "EDM": "noisecraft.core.schedules",
    "make_schedule": "noisecraft.core.schedules",
    "SCHEDULES": "noisecraft.core.schedules",
    "karras_sigmas": "noisecraft.core.schedules",
    "alpha_bar_from_sigma": "noisecraft.core.schedules",
    "sigma_from_alpha_bar": "noisecraft.core.schedules",
    "log_snr_from_sigma": "noisecraft.core.schedules",
    "sigma_from_log_snr": "noisecraft.core.schedules",
    "rescale_zero_terminal_snr": "noisecraft.core.schedules",
    # core: forward process
    "markov_step": "noisecraft.core.process",
    "q_sample": "noisecraft.core.process",
    "add_noise": "noisecraft.core.process",
    "posterior_vp": "noisecraft.core.process",
    "posterior_ve": "noisecraft.core.process",
    "ve_to_vp": "noisecraft.core.process",
    "vp_to_ve": "noisecraft.core.process",
    # core: parameterisation, denoiser, losses, EMA, oracles
    "Preconditioner": "noisecraft.core.precond",
    "PARAMETERISATIONS": "noisecraft.core.precond",
    "convert": "noisecraft.core.precond",
    "eps_from_x0": "noisecraft.core.precond",
    "score_from_x0": "noisecraft.core.precond",
    "v_from_x0": "noisecraft.core.precond",
    "to_d": "noisecraft.core.precond",
    "Denoiser": "noisecraft.core.denoiser",
    "PreconditionedDenoiser": "noisecraft.core.denoiser",
    "DenoisingLoss": "noisecraft.core.losses",
    "loss_weight": "noisecraft.core.losses",
    "EMA": "noisecraft.core.ema",
    "GaussianMixture": "noisecraft.core.oracles",
    "GaussianData": "noisecraft.core.oracles",
    "EmpiricalDenoiser": "noisecraft.core.oracles",
    # sampling
    "SAMPLERS": "noisecraft.sampling.samplers",
    "get_sampler": "noisecraft.sampling.samplers",
    "sample_ddpm": "noisecraft.sampling.samplers",
    "sample_euler": "noisecraft.sampling.samplers",
    "sample_ddim": "noisecraft.sampling.samplers",
    "sample_heun": "noisecraft.sampling.samplers",
    "SAMPLER_INFO": "noisecraft.sampling.samplers",
    "Step": "noisecraft.sampling.samplers",
    "iterate": "noisecraft.sampling.samplers",
    "sampler_knobs": "noisecraft.sampling.samplers",
    "step_sigmas": "noisecraft.sampling.steps",
    "STEP_SCHEDULES": "noisecraft.sampling.steps",
    "fit_schedule": "noisecraft.sampling.steps",
    "save_schedule": "noisecraft.sampling.steps",
    "load_schedule": "noisecraft.sampling.steps",
    "invert": "noisecraft.sampling.inversion",
    "reconstruct": "noisecraft.sampling.inversion",
    "per_sample_generators": "noisecraft.sampling.noise",
    # guidance (classifier-free and classifier guidance as denoiser transforms)
    "CFGDenoiser": "noisecraft.sampling.guidance",
    "ClassifierGuidedDenoiser": "noisecraft.sampling.guidance",
    "ClassConditioned": "noisecraft.sampling.guidance",
    "MixtureClassifier": "noisecraft.sampling.guidance",
    "build_guided_denoiser": "noisecraft.sampling.guidance",
    "NoisyClassifier": "noisecraft.models.classifier",
    "ClassifierConfig": "noisecraft.models.classifier",
    "train_classifier": "noisecraft.models.classifier",
    "load_classifier": "noisecraft.models.classifier",
    # models and data
    "MLP": "noisecraft.models.mlp",
    "toy_data": "noisecraft.data.toys",
    "DataConfig": "noisecraft.data.config",
    "make_dataset": "noisecraft.data.datasets",
    "scan_images": "noisecraft.data.scan",
    "ModelConfig": "noisecraft.models.factory",
    "build_denoiser": "noisecraft.models.factory",
    "build_unet": "noisecraft.models.unet",
    "build_dit": "noisecraft.models.dit",
    # training
    "TrainConfig": "noisecraft.training.config",
    "apply_overrides": "noisecraft.training.config",
    "train": "noisecraft.training.loop",
    "load_run": "noisecraft.training.checkpoint",
    "generate": "noisecraft.training.samples",
    # interop
    "export_diffusers": "noisecraft.interop.diffusers",
    "load_diffusers": "noisecraft.interop.diffusers",
    "schedule_from_diffusers": "noisecraft.interop.diffusers",
    "ClippedDenoiser": "noisecraft.interop.diffusers",
    "push_to_hub": "noisecraft.interop.hub",
    "load_from_hub": "noisecraft.interop.hub",
    # evaluation: metrics, features, likelihood, results with protocol
    "frechet_distance": "noisecraft.evaluation.metrics",
    "kernel_distance": "noisecraft.evaluation.metrics",
    "precision_recall": "noisecraft.evaluation.metrics",
    "quality_scores": "noisecraft.evaluation.metrics",
    "BuiltinFeatures": "noisecraft.evaluation.features",
    "InceptionFeatures": "noisecraft.evaluation.features",
    "reference_images": "noisecraft.evaluation.reference",
    "evaluate_images": "noisecraft.evaluation.evaluate",
    "evaluate_denoiser": "noisecraft.evaluation.evaluate",
    "ode_log_likelihood": "noisecraft.evaluation.likelihood",
    "ddpm_vlb": "noisecraft.evaluation.likelihood",
    "mmd_rbf": "noisecraft.evaluation.distances",
    "sliced_wasserstein": "noisecraft.evaluation.distances",
    # editing (the inversion-based edits; editing.edits.invert/regenerate are the edit-side inversion)
    "img2img": "noisecraft.editing.sdedit",
    "inpaint": "noisecraft.editing.inpaint",
    "swap_class": "noisecraft.editing.edits",
    "interpolate": "noisecraft.editing.edits",
    "slerp": "noisecraft.editing.edits",
    "load_image": "noisecraft.editing.io",
    "load_mask": "noisecraft.editing.io",
    "rect_mask": "noisecraft.editing.io",
    "save_comparison": "noisecraft.editing.io",
    # errors
    "NoisecraftError": "noisecraft.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'noisecraft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
