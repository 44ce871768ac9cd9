"""noisecraft: a toolkit for building diffusion models.

The public API is flat and imported lazily (so the command line starts instantly):

    import noisecraft as nc
    schedule = nc.make_schedule("cosine")
    model = nc.PreconditionedDenoiser(net, nc.Preconditioner("v", noise_input="t", schedule=schedule))
    loss = nc.DenoisingLoss(schedule, weighting="min_snr")(model, x0).mean()
    x = nc.get_sampler("ddpm")(model, schedule.sigma_max * torch.randn(16, 2), nc.step_sigmas(schedule, 50))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    "SAMPLERS": "noisecraft.sampling.registry",
    "get_sampler": "noisecraft.sampling.registry",
    "SAMPLER_INFO": "noisecraft.sampling.registry",
    "Step": "noisecraft.sampling.registry",
    "iterate": "noisecraft.sampling.registry",
    "sampler_knobs": "noisecraft.sampling.registry",
    "step_sigmas": "noisecraft.sampling.steps",
    "STEP_SCHEDULES": "noisecraft.sampling.steps",
    "fit_schedule": "noisecraft.sampling.steps",
    "save_schedule": "noisecraft.sampling.steps",
    "load_schedule": "noisecraft.sampling.steps",
    "invert": "noisecraft.sampling.inversion",
    "reconstruct": "noisecraft.sampling.inversion",
    "regenerate": "noisecraft.sampling.inversion",
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
    "generate": "noisecraft.sampling.generate",
    "save_grid": "noisecraft.data.io",
    "save_images": "noisecraft.data.io",
    "load_images": "noisecraft.data.io",
    # interop
    "export_diffusers": "noisecraft.interop.diffusers",
    "load_diffusers": "noisecraft.interop.diffusers",
    "schedule_from_diffusers": "noisecraft.interop.diffusers",
    "ClippedDenoiser": "noisecraft.core.denoiser",
    "push_to_hub": "noisecraft.interop.hub",
    "load_from_hub": "noisecraft.interop.hub",
    # evaluation: metrics, features, likelihood, results with protocol
    "frechet_distance": "noisecraft.evaluation.metrics",
    "kernel_distance": "noisecraft.evaluation.metrics",
    "precision_recall": "noisecraft.evaluation.metrics",
    "quality_scores": "noisecraft.evaluation.metrics",
    "frechet_distance_ci": "noisecraft.evaluation.metrics",
    "BuiltinFeatures": "noisecraft.evaluation.features",
    "InceptionFeatures": "noisecraft.evaluation.features",
    "reference_images": "noisecraft.evaluation.reference",
    "evaluate_images": "noisecraft.evaluation.evaluate",
    "evaluate_denoiser": "noisecraft.evaluation.evaluate",
    "folder_reference": "noisecraft.evaluation.evaluate",
    "ode_log_likelihood": "noisecraft.evaluation.likelihood",
    "ddpm_vlb": "noisecraft.evaluation.likelihood",
    "mmd_rbf": "noisecraft.evaluation.distances",
    "sliced_wasserstein": "noisecraft.evaluation.distances",
    # editing (the inversion-based edits, built on sampling.inversion's invert/regenerate)
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

if TYPE_CHECKING:  # what IDEs and type checkers see (the same names as _EXPORTS; a test keeps them equal)
    from noisecraft.core.denoiser import ClippedDenoiser, Denoiser, PreconditionedDenoiser
    from noisecraft.core.ema import EMA
    from noisecraft.core.losses import DenoisingLoss, loss_weight
    from noisecraft.core.oracles import EmpiricalDenoiser, GaussianData, GaussianMixture
    from noisecraft.core.precond import (
        PARAMETERISATIONS,
        Preconditioner,
        convert,
        eps_from_x0,
        score_from_x0,
        to_d,
        v_from_x0,
    )
    from noisecraft.core.process import add_noise, markov_step, posterior_ve, posterior_vp, q_sample, ve_to_vp, vp_to_ve
    from noisecraft.core.schedules import (
        EDM,
        SCHEDULES,
        VE,
        DiscreteVP,
        Schedule,
        VPContinuous,
        alpha_bar_from_sigma,
        karras_sigmas,
        log_snr_from_sigma,
        make_schedule,
        rescale_zero_terminal_snr,
        sigma_from_alpha_bar,
        sigma_from_log_snr,
    )
    from noisecraft.data.config import DataConfig
    from noisecraft.data.datasets import make_dataset
    from noisecraft.data.io import load_images, save_grid, save_images
    from noisecraft.data.scan import scan_images
    from noisecraft.data.toys import toy_data
    from noisecraft.editing.edits import interpolate, slerp, swap_class
    from noisecraft.editing.inpaint import inpaint
    from noisecraft.editing.io import load_image, load_mask, rect_mask, save_comparison
    from noisecraft.editing.sdedit import img2img
    from noisecraft.errors import NoisecraftError
    from noisecraft.evaluation.distances import mmd_rbf, sliced_wasserstein
    from noisecraft.evaluation.evaluate import evaluate_denoiser, evaluate_images, folder_reference
    from noisecraft.evaluation.features import BuiltinFeatures, InceptionFeatures
    from noisecraft.evaluation.likelihood import ddpm_vlb, ode_log_likelihood
    from noisecraft.evaluation.metrics import (
        frechet_distance,
        frechet_distance_ci,
        kernel_distance,
        precision_recall,
        quality_scores,
    )
    from noisecraft.evaluation.reference import reference_images
    from noisecraft.interop.diffusers import export_diffusers, load_diffusers, schedule_from_diffusers
    from noisecraft.interop.hub import load_from_hub, push_to_hub
    from noisecraft.models.classifier import ClassifierConfig, NoisyClassifier, load_classifier, train_classifier
    from noisecraft.models.dit import build_dit
    from noisecraft.models.factory import ModelConfig, build_denoiser
    from noisecraft.models.mlp import MLP
    from noisecraft.models.unet import build_unet
    from noisecraft.sampling.generate import generate
    from noisecraft.sampling.guidance import (
        CFGDenoiser,
        ClassConditioned,
        ClassifierGuidedDenoiser,
        MixtureClassifier,
        build_guided_denoiser,
    )
    from noisecraft.sampling.inversion import invert, reconstruct, regenerate
    from noisecraft.sampling.noise import per_sample_generators
    from noisecraft.sampling.registry import SAMPLER_INFO, SAMPLERS, Step, get_sampler, iterate, sampler_knobs
    from noisecraft.sampling.steps import STEP_SCHEDULES, fit_schedule, load_schedule, save_schedule, step_sigmas
    from noisecraft.training.checkpoint import load_run
    from noisecraft.training.config import TrainConfig, apply_overrides
    from noisecraft.training.loop import train


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'noisecraft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
