"""Round trips between noisecraft denoisers and diffusers pipeline folders.

Export (``export_diffusers``): the U-Net's weights are already a diffusers ``UNet2DModel``; only the scheduler
that reproduces noisecraft's schedule and parameterisation has to be written beside them:

- discrete VP schedule, noise input t, σ_data = 1, parameterisation eps | v | x0 → a ``DDPMPipeline`` folder
  (UNet2DModel + DDPMScheduler with the same β's, prediction_type epsilon | v_prediction | sample,
  clip_sample off, trailing timesteps). ``DDPMPipeline.from_pretrained(folder)()`` samples it, and
  ``DDIMScheduler.from_pretrained(folder, subfolder="scheduler")`` gives DDIM.
- EDM schedule, noise input ¼·ln σ, parameterisation edm | v → the UNet with an ``EDMEulerScheduler`` config
  (diffusers' "epsilon" EDM preconditioning is EDM's F-parameterisation: c_skip = σ_d²/(σ²+σ_d²),
  c_out = σσ_d/√(σ²+σ_d²)); diffusers has no generic EDM pipeline class, so model_index.json is omitted and
  the scheduler loop is run by hand (docs/interop.md).

Import (``load_diffusers``): read a pipeline folder's UNet2DModel and scheduler config (beta_schedule,
trained_betas, prediction_type, rescale_betas_zero_snr, timestep_spacing, or EDM σ's) into a
``PreconditionedDenoiser`` + Schedule, so any noisecraft sampler samples it: the σ of each diffusers timestep
t is σ_t = √((1−ᾱ_t)/ᾱ_t), c_in = √ᾱ turns the VE state into the VP input, and c_noise = t(σ).

Every export also writes noisecraft.json (the ModelConfig, when known), so a round trip restores it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from noisecraft.core.denoiser import PreconditionedDenoiser
from noisecraft.core.precond import Preconditioner
from noisecraft.core.schedules import EDM, DiscreteVP, Schedule, cosine_betas, linear_betas, scaled_linear_betas
from noisecraft.errors import NoisecraftError

NOISECRAFT_JSON = "noisecraft.json"
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}  # noisecraft kind -> diffusers
KINDS = {v: k for k, v in PREDICTION_TYPES.items()}
EDM_PREDICTION_TYPES = {"edm": "epsilon", "v": "v_prediction"}
EDM_SCHEDULERS = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")


# ----------------------------------------------------------------------------------------------------------
# Export.
def beta_config(schedule: DiscreteVP) -> dict[str, Any]:
    """DDPMScheduler keywords reproducing `schedule`'s β's: a named schedule when it matches, else the list."""
    betas, T = schedule.betas, schedule.num_timesteps
    start, end = float(betas[0]), float(betas[-1])
    named = {
        "linear": linear_betas(T, start, end),
        "scaled_linear": scaled_linear_betas(T, start, end),
        "squaredcos_cap_v2": cosine_betas(T),
    }
    base = {"num_train_timesteps": T}
    for name, candidate in named.items():
        if torch.allclose(candidate, betas, rtol=1e-6, atol=1e-9):
            extra = {} if name == "squaredcos_cap_v2" else {"beta_start": start, "beta_end": end}
            return {**base, "beta_schedule": name, **extra}
    return {**base, "beta_schedule": "linear", "trained_betas": betas.tolist()}


def scheduler_for(denoiser: PreconditionedDenoiser, schedule: Schedule):
    """The diffusers scheduler that samples `denoiser` as noisecraft does, or a NoisecraftError saying why not."""
    p = denoiser.precond
    if isinstance(schedule, DiscreteVP):
        if p.noise_input != "t" or abs(p.sigma_data - 1.0) > 1e-12 or p.kind not in PREDICTION_TYPES:
            raise NoisecraftError(
                "a DDPM export needs noise_input 't', sigma_data 1 and parameterisation eps, v or x0; "
                f"this model has {p.noise_input!r}, {p.sigma_data}, {p.kind!r}"
            )
        from diffusers import DDPMScheduler

        return DDPMScheduler(
            **beta_config(schedule),
            prediction_type=PREDICTION_TYPES[p.kind],
            clip_sample=False,
            variance_type="fixed_small",
            timestep_spacing="trailing",
        )
    if isinstance(schedule, EDM):
        if p.noise_input != "log_sigma" or p.kind not in EDM_PREDICTION_TYPES:
            raise NoisecraftError(
                "an EDM export needs noise_input 'log_sigma' and parameterisation edm or v; "
                f"this model has {p.noise_input!r}, {p.kind!r}"
            )
        from diffusers import EDMEulerScheduler

        return EDMEulerScheduler(
            sigma_min=schedule.sigma_min,
            sigma_max=schedule.sigma_max,
            sigma_data=p.sigma_data,
            rho=schedule.rho,
            sigma_schedule="karras",
            prediction_type=EDM_PREDICTION_TYPES[p.kind],
        )
    raise NoisecraftError(
        f"export to diffusers supports discrete VP schedules (DDPM) and the edm schedule, not {type(schedule).__name__}"
    )


def export_diffusers(denoiser: PreconditionedDenoiser, schedule: Schedule, folder: str | Path) -> Path:
    """Write `denoiser` (a U-Net model) as a diffusers folder: unet/, scheduler/, model_index.json (DDPM).

    Returns the folder. Raises NoisecraftError for networks or schedules diffusers cannot represent.
    """
    from noisecraft.models.unet import UNetNet

    net = getattr(denoiser, "net", None)
    if not isinstance(net, UNetNet):
        raise NoisecraftError(f"only U-Net models (arch 'unet') export to diffusers; this one is {type(net).__name__}")
    scheduler = scheduler_for(denoiser, schedule)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(schedule, DiscreteVP):
        from diffusers import DDPMPipeline

        DDPMPipeline(unet=net.unet, scheduler=scheduler).save_pretrained(folder)
    else:
        net.unet.save_pretrained(folder / "unet")
        scheduler.save_pretrained(folder / "scheduler")
    meta = {
        "format": "noisecraft-diffusers-export/1",
        "parameterisation": denoiser.precond.kind,
        "sigma_data": denoiser.precond.sigma_data,
        "noise_input": denoiser.precond.noise_input,
        "num_classes": net.num_classes,
        "null_label": net.null_label,
    }
    config = getattr(denoiser, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        meta["model_config"] = config.to_dict()
    (folder / NOISECRAFT_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


# ----------------------------------------------------------------------------------------------------------
# Import.
def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise NoisecraftError(f"cannot read {path}: {e}") from None


def _scheduler_config(folder: Path) -> dict[str, Any]:
    for path in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if path.is_file():
            return _read_json(path)
    raise NoisecraftError(f"{folder} has no scheduler/scheduler_config.json: not a diffusers pipeline folder")


def schedule_from_diffusers(config: dict[str, Any]) -> tuple[Schedule, Preconditioner]:
    """A noisecraft Schedule and Preconditioner equivalent to a diffusers scheduler config (a dict)."""
    import diffusers

    name = config.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise NoisecraftError(f"unknown diffusers scheduler class {name!r}")
    pred = config.get("prediction_type", "epsilon")
    if name in EDM_SCHEDULERS:
        kinds = {v: k for k, v in EDM_PREDICTION_TYPES.items()}
        if pred not in kinds:
            raise NoisecraftError(f"unsupported EDM prediction_type {pred!r}; valid: {', '.join(kinds)}")
        schedule = EDM(
            sigma_lo=float(config.get("sigma_min", 0.002)),
            sigma_hi=float(config.get("sigma_max", 80.0)),
            rho=float(config.get("rho", 7.0)),
        )
        return schedule, Preconditioner(kinds[pred], float(config.get("sigma_data", 0.5)), "log_sigma")
    if pred not in KINDS:
        raise NoisecraftError(f"unsupported prediction_type {pred!r}; valid: {', '.join(KINDS)}")
    try:
        scheduler = cls.from_config(config)
        betas = scheduler.betas.to(torch.float64)
    except Exception as e:
        raise NoisecraftError(f"cannot build {name} from its config: {e}") from None
    label = config.get("beta_schedule", "custom") + ("+zsnr" if config.get("rescale_betas_zero_snr") else "")
    schedule = DiscreteVP(betas=betas, name=label)
    return schedule, Preconditioner(KINDS[pred], 1.0, "t", schedule)


def load_diffusers(folder: str | Path) -> tuple[PreconditionedDenoiser, Schedule]:
    """Load a diffusers UNet2DModel pipeline folder (unet/ + scheduler/) as a noisecraft denoiser.

    The returned denoiser has ``.timestep_spacing`` (the scheduler's, e.g. "leading") so a sampler can use
    ``step_sigmas(schedule, steps, denoiser.timestep_spacing)`` to walk the same timesteps as diffusers, and
    ``.clip_sample`` / ``.clip_sample_range`` from the config: wrap it in ``ClippedDenoiser`` to clip like
    diffusers does.
    """
    from diffusers import UNet2DModel

    from noisecraft.models.unet import UNetNet

    folder = Path(folder)
    if not folder.is_dir():
        raise NoisecraftError(f"{folder} is not a folder")
    config = _scheduler_config(folder)
    schedule, precond = schedule_from_diffusers(config)
    sub = "unet" if (folder / "unet" / "config.json").is_file() else None
    if sub is None and not (folder / "config.json").is_file():
        raise NoisecraftError(f"{folder} has no unet/config.json: not a UNet2DModel pipeline folder")
    unet_config = _read_json(folder / (sub or ".") / "config.json")
    if unet_config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise NoisecraftError(f"{folder}: the model is a {unet_config['_class_name']}, not a UNet2DModel")
    unet = UNet2DModel.from_pretrained(folder, subfolder=sub, use_safetensors=True)  # never unpickle
    meta = _read_json(folder / NOISECRAFT_JSON) if (folder / NOISECRAFT_JSON).is_file() else {}
    # A class table of n rows: noisecraft reserves its last row as the null label; so is a foreign one read.
    num_classes = meta.get("num_classes", max((unet.config.num_class_embeds or 1) - 1, 0))
    denoiser = PreconditionedDenoiser(UNetNet(unet, num_classes), precond)
    denoiser.timestep_spacing = config.get("timestep_spacing", "leading")  # type: ignore[assignment]
    denoiser.clip_sample = bool(config.get("clip_sample", False))  # type: ignore[assignment]
    denoiser.clip_sample_range = float(config.get("clip_sample_range", 1.0))  # type: ignore[assignment]
    if "model_config" in meta:
        from noisecraft.models.factory import ModelConfig

        denoiser.config = ModelConfig.from_dict(meta["model_config"])  # type: ignore[assignment]
    return denoiser.eval(), schedule
