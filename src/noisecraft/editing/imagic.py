"""Imagic: text-driven edits of one real image (Kawar et al. 2023, "Imagic: Text-Based Real Image Editing with
Diffusion Models", Sec. 3), on any text-conditioned noisecraft denoiser, a Stable-Diffusion folder's included.

Given an image x0 and a target prompt with embedding e_tgt:

1. ``optimise_embedding``: with the model frozen, find e_opt near e_tgt that reconstructs x0, i.e. minimise the
   denoising loss E_{σ,ε} λ(σ)‖D(x0 + σε; σ, e) − x0‖² over e (the same loss the run trained with), starting
   from e = e_tgt. Only the embedding changes.
2. ``finetune``: fine-tune a COPY of the model on x0 with e_opt held fixed, so that e_opt reproduces x0 even
   better (and nearby embeddings keep x0's details). The caller's model is never touched.
3. ``sample_etas``: generate with the fine-tuned copy from e(η) = η·e_tgt + (1 − η)·e_opt. η = 0 gives back x0,
   η = 1 the prompt; the paper's sweet spot lies in between (0.6–0.8 on Imagen).

An embedding is the ``cond`` a text model takes: {text_states (1, T, D), text_mask (1, T), text_pooled (1, D)}.
Step 1 optimises what the model reads (``trained_keys``): in noisecraft's layout the token states and the pooled
vector (the mask of the target prompt stays fixed); in the "sd" layout of a Stable-Diffusion folder's U-Net
(interop/stable_diffusion.py) every token state, padding included, and nothing else (it reads no mask and no
pooled vector, which stay e_tgt's).
``ImagicEdit.save`` writes e_tgt, e_opt and the fine-tuned delta (tuned − original weights) as safetensors, so
``ImagicEdit.load`` gives a new η for the cost of sampling. Every random draw comes from generators seeded
from `seed`, so an edit is a function of (model, image, prompt, settings, seed).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from noisecraft.core.losses import DenoisingLoss
from noisecraft.errors import NoisecraftError
from noisecraft.models.text import TEXT_KEYS

Embedding = dict[str, Tensor]  # {text_states (1, T, D), text_mask (1, T), text_pooled (1, D)}
TRAINED_KEYS = ("text_states", "text_pooled")  # what step 1 optimises and η interpolates; text_mask stays
SD_TRAINED_KEYS = ("text_states",)  # layout "sd": the U-Net reads the token states alone


@dataclass
class ImagicSettings:
    """The knobs of Imagic's two optimisation steps.

    Args:
        embed_steps: Adam steps of the embedding optimisation (step 1).
        finetune_steps: Adam steps of the model fine-tuning (step 2).
        embed_lr: learning rate of step 1.
        finetune_lr: learning rate of step 2.
        batch: noise draws (σ, ε) of the one image per optimiser step (a lower-variance loss than one draw).
        seed: seeds every draw of both steps.
    """

    embed_steps: int = 100
    finetune_steps: int = 100
    embed_lr: float = 1e-3
    finetune_lr: float = 1e-4
    batch: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("embed_steps", "finetune_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise NoisecraftError(f"{name} must be an integer >= 0, got {v!r}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise NoisecraftError(f"batch must be a positive integer, got {self.batch!r}")
        for name in ("embed_lr", "finetune_lr"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v > 0):
                raise NoisecraftError(f"{name} must be a positive number, got {v!r}")


def check_text_model(denoiser: nn.Module) -> None:
    """Refuse a model that takes no text (Imagic interpolates text embeddings)."""
    from noisecraft.models.cond_unet import CondUNetNet

    if not isinstance(getattr(denoiser, "net", None), CondUNetNet):
        raise NoisecraftError("imagic needs a text-conditioned model (a run trained with --text)")


def trained_keys(denoiser: nn.Module) -> tuple[str, ...]:
    """The embedding entries `denoiser` reads, which step 1 optimises and step 3 interpolates: the token states
    and the pooled vector, or the token states alone for a U-Net in the "sd" layout (a Stable-Diffusion folder)."""
    return SD_TRAINED_KEYS if getattr(getattr(denoiser, "net", None), "layout", None) == "sd" else TRAINED_KEYS


def embed_prompt(encoder, prompt: str, device: torch.device | str) -> Embedding:
    """The target embedding e_tgt of `prompt` (1, ...) on `device` (the encoder warns when it truncates); the
    empty prompt is refused."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise NoisecraftError("imagic needs a non-empty --prompt describing the edited image")
    return {k: v.to(device) for k, v in encoder.encode([prompt], device=device).items()}


def mix(e_tgt: Embedding, e_opt: Embedding, eta: float, keys: Sequence[str] = TRAINED_KEYS) -> Embedding:
    """e(η) = η·e_tgt + (1 − η)·e_opt on `keys` (η may leave [0, 1]); the other entries are e_tgt's."""
    return {k: (eta * e_tgt[k] + (1 - eta) * e_opt[k]) if k in keys else e_tgt[k] for k in e_tgt}


def _expand(e: Embedding, n: int) -> Embedding:
    return {k: v.expand(n, *v.shape[1:]) for k, v in e.items()}


def _loss_draws(x0: Tensor, n: int, gen: torch.Generator, schedule) -> tuple[Tensor, Tensor]:
    """(σ (n,), ε (n, ...)) drawn from the training density with `gen` (CPU), moved to x0's device."""
    sigma = schedule.training_sigmas(n, gen).to(x0.device)
    noise = torch.randn((n, *x0.shape[1:]), generator=gen, dtype=x0.dtype).to(x0.device)
    return sigma, noise


def reconstruction_loss(
    denoiser: nn.Module, loss: DenoisingLoss, x0: Tensor, e: Embedding, n: int = 128, seed: int = 12345
) -> float:
    """The denoising loss of x0 (1, ...) under embedding e, averaged over n fixed draws (σ, ε) of `seed`:
    the quantity steps 1 and 2 lower, measured on draws they never saw (a different seed)."""
    gen = torch.Generator().manual_seed(seed)
    sigma, noise = _loss_draws(x0, n, gen, loss.schedule)
    with torch.no_grad():
        return float(loss(denoiser, x0.expand(n, *x0.shape[1:]), sigma=sigma, noise=noise, **_expand(e, n)).mean())


def _progress(steps: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(range(steps), desc=desc, disable=not show, leave=False, dynamic_ncols=True)


def optimise_embedding(
    denoiser: nn.Module,
    loss: DenoisingLoss,
    x0: Tensor,
    e_tgt: Embedding,
    settings: ImagicSettings,
    progress: bool = False,
) -> tuple[Embedding, list[float]]:
    """Step 1: e_opt = argmin_e loss(x0 | e) from e = e_tgt, the model frozen. Returns (e_opt, per-step losses).

    x0 (1, C, H, W) in the model's data space (latents for a latent run or a Stable-Diffusion folder). Only the
    entries the model reads (``trained_keys``) move; the model's parameters get no gradient and are not changed;
    e_tgt is not changed.
    """
    gen = torch.Generator().manual_seed(settings.seed)
    keys = trained_keys(denoiser)
    e = {k: (v.detach().clone().requires_grad_(k in keys)) for k, v in e_tgt.items()}
    opt = torch.optim.Adam([e[k] for k in keys], lr=settings.embed_lr)
    frozen = [p.requires_grad for p in denoiser.parameters()]
    denoiser.requires_grad_(False)
    B, losses = settings.batch, []
    xb = x0.expand(B, *x0.shape[1:])
    try:
        for _ in _progress(settings.embed_steps, "imagic 1/2: embedding", progress):
            sigma, noise = _loss_draws(x0, B, gen, loss.schedule)
            value = loss(denoiser, xb, sigma=sigma, noise=noise, **_expand(e, B)).mean()
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            losses.append(float(value.detach()))
    finally:
        for p, r in zip(denoiser.parameters(), frozen):
            p.requires_grad_(r)
    return {k: v.detach() for k, v in e.items()}, losses


def copy_model(denoiser: nn.Module) -> nn.Module:
    """A deep copy of the denoiser's weights; an attached text encoder is shared, not copied."""
    net = getattr(denoiser, "net", None)
    enc = getattr(net, "text_encoder", None)
    memo = {} if enc is None else {id(enc): enc}
    return copy.deepcopy(denoiser, memo)


def finetune(
    denoiser: nn.Module,
    loss: DenoisingLoss,
    x0: Tensor,
    e_opt: Embedding,
    settings: ImagicSettings,
    progress: bool = False,
) -> tuple[nn.Module, list[float]]:
    """Step 2: fine-tune a COPY of the model on x0 with e_opt fixed. Returns (the tuned copy, per-step losses).

    The given model's weights are not changed (the copy owns its own tensors).
    """
    gen = torch.Generator().manual_seed(settings.seed + 1)
    tuned = copy_model(denoiser).train().requires_grad_(True)
    opt = torch.optim.Adam(tuned.parameters(), lr=settings.finetune_lr)
    B, losses = settings.batch, []
    xb = x0.expand(B, *x0.shape[1:])
    e = _expand({k: v.detach() for k, v in e_opt.items()}, B)
    for _ in _progress(settings.finetune_steps, "imagic 2/2: fine-tuning", progress):
        sigma, noise = _loss_draws(x0, B, gen, loss.schedule)
        value = loss(tuned, xb, sigma=sigma, noise=noise, **e).mean()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        losses.append(float(value.detach()))
    opt.zero_grad(set_to_none=True)  # the last gradients: as large as the model (3.4 GB for SD 1.5's U-Net)
    return tuned.eval().requires_grad_(False), losses


def weight_delta(original: nn.Module, tuned: nn.Module) -> dict[str, Tensor]:
    """tuned − original for every floating-point entry of the state dict (what ``--save`` stores)."""
    a, b = original.state_dict(), tuned.state_dict()
    return {k: (b[k] - a[k]).detach().contiguous() for k in a if a[k].is_floating_point()}


def apply_delta(denoiser: nn.Module, delta: dict[str, Tensor]) -> nn.Module:
    """A copy of `denoiser` with `delta` added to its weights (the original is not changed)."""
    tuned = copy_model(denoiser)
    state = tuned.state_dict()
    missing = [k for k in delta if k not in state]
    if missing or len(delta) == 0:
        raise NoisecraftError(
            "the saved imagic delta does not fit this model (other architecture or run): "
            f"{len(missing)} unknown weights"
        )
    with torch.no_grad():
        for k, d in delta.items():
            if state[k].shape != d.shape:
                raise NoisecraftError(f"the saved imagic delta does not fit this model: {k} has another shape")
            state[k].add_(d.to(state[k]))
    return tuned.eval().requires_grad_(False)


@torch.no_grad()
def sample_etas(
    model: nn.Module,
    e_tgt: Embedding,
    e_opt: Embedding,
    etas: Sequence[float],
    sigmas: Tensor,
    shape: Sequence[int],
    *,
    seed: int = 0,
    sampler: str = "dpmpp_2m",
    cfg_scale: float | None = None,
    negative: Embedding | None = None,
    callback: Callable | None = None,
) -> Tensor:
    """Step 3: one sample per η from e(η) = η·e_tgt + (1 − η)·e_opt, all from the same start noise (seed).

    Returns (len(etas), *shape) in the model's data space. cfg_scale: classifier-free guidance with the
    `negative` embedding (e.g. the empty prompt's) as the unconditional branch; None: the conditional model.
    """
    from noisecraft.sampling.generate import model_device
    from noisecraft.sampling.noise import per_sample_generators, randn
    from noisecraft.sampling.samplers import get_sampler

    if len(etas) == 0:
        raise NoisecraftError("give at least one η")
    device = model_device(model)
    den = model
    if cfg_scale is not None:
        if negative is None:
            raise NoisecraftError("cfg_scale needs the negative prompt's embedding (negative=)")
        from noisecraft.sampling.prompt_guidance import PromptCFGDenoiser

        den = PromptCFGDenoiser(model, cfg_scale, negative)
    out = []
    for eta in etas:  # one at a time: an η's image does not depend on which other η are drawn with it
        gens = per_sample_generators([seed])  # the same noise for every η: the strip shows η's effect only
        x = float(sigmas[0]) * randn((1, *shape), gens, torch.float32, device)  # (1, *shape)
        cond = {k: v.to(device) for k, v in mix(e_tgt, e_opt, float(eta), trained_keys(model)).items()}
        out.append(get_sampler(sampler)(den, x, sigmas, cond=cond, generator=gens, callback=callback).float())
    return torch.cat(out)  # (len(etas), *shape)


@dataclass
class ImagicEdit:
    """The result of steps 1–2 for one image and prompt: ready to sample any η (``sample``), or to ``save``."""

    prompt: str
    e_tgt: Embedding
    e_opt: Embedding
    tuned: nn.Module
    delta: dict[str, Tensor]
    settings: ImagicSettings
    embed_losses: list[float] = field(default_factory=list)
    finetune_losses: list[float] = field(default_factory=list)

    def save(self, folder: str | Path) -> Path:
        """Write embeddings.safetensors (e_tgt, e_opt), delta.safetensors (tuned − original) and imagic.json."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        emb = {f"tgt.{k}": v.detach().cpu().contiguous() for k, v in self.e_tgt.items()}
        emb.update({f"opt.{k}": v.detach().cpu().contiguous() for k, v in self.e_opt.items()})
        save_file(emb, str(folder / "embeddings.safetensors"))
        save_file({k: v.cpu() for k, v in self.delta.items()}, str(folder / "delta.safetensors"))
        meta = {
            "prompt": self.prompt,
            "settings": asdict(self.settings),
            "embed_loss": self.embed_losses[-1:] and self.embed_losses[-1],
            "finetune_loss": self.finetune_losses[-1:] and self.finetune_losses[-1],
        }
        (folder / "imagic.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, denoiser: nn.Module) -> ImagicEdit:
        """An edit saved by ``save``, applied to (a copy of) the same `denoiser`."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        files = [folder / n for n in ("embeddings.safetensors", "delta.safetensors", "imagic.json")]
        lost = [f.name for f in files if not f.is_file()]
        if lost:
            raise NoisecraftError(f"{str(folder)!r} is not a saved imagic edit (missing {', '.join(lost)})")
        try:
            emb = load_file(str(files[0]))
            delta = load_file(str(files[1]))
            meta = json.loads(files[2].read_text())
        except (OSError, RuntimeError, ValueError, SafetensorError) as e:
            raise NoisecraftError(f"cannot read the saved imagic edit in {str(folder)!r}: {e}") from None
        device = next(denoiser.parameters()).device
        e_tgt = {k: emb[f"tgt.{k}"].to(device) for k in TEXT_KEYS}
        e_opt = {k: emb[f"opt.{k}"].to(device) for k in TEXT_KEYS}
        tuned = apply_delta(denoiser, delta)
        return cls(meta["prompt"], e_tgt, e_opt, tuned, delta, ImagicSettings(**meta["settings"]))

    def sample(self, etas: Sequence[float], sigmas: Tensor, shape: Sequence[int], **kw) -> Tensor:
        """``sample_etas`` with this edit's model and embeddings."""
        return sample_etas(self.tuned, self.e_tgt, self.e_opt, etas, sigmas, shape, **kw)


def imagic(
    denoiser: nn.Module,
    loss: DenoisingLoss,
    x0: Tensor,
    prompt: str,
    settings: ImagicSettings | None = None,
    *,
    encoder=None,
    progress: bool = False,
) -> ImagicEdit:
    """Steps 1 and 2 of Imagic for one image x0 (1, C, H, W) (in the model's data space) and a target prompt.

    `denoiser` is a text-conditioned model (its attached encoder is used unless `encoder` is given), e.g. a run
    from ``load_run`` or a Stable-Diffusion folder from ``interop.stable_diffusion.load_stable_diffusion``; it is
    left unchanged. x0 lives on the model's device, and the embeddings are made there. `loss`: the
    denoising loss to optimise (``run_loss(cfg, schedule)`` gives the run's own).
    """
    check_text_model(denoiser)
    settings = settings or ImagicSettings()
    if x0.ndim != 4 or x0.shape[0] != 1:
        raise NoisecraftError(f"imagic edits one image: x0 must be (1, C, H, W), got {tuple(x0.shape)}")
    encoder = encoder if encoder is not None else denoiser.net.text_encoder
    if encoder is None:
        raise NoisecraftError("imagic needs the model's text encoder: load it with nc.load_run")
    e_tgt = embed_prompt(encoder, prompt, x0.device)
    e_opt, l1 = optimise_embedding(denoiser, loss, x0, e_tgt, settings, progress)
    tuned, l2 = finetune(denoiser, loss, x0, e_opt, settings, progress)
    delta = weight_delta(denoiser, tuned)
    del tuned  # freed before the rebuilt copy is made: fewer model-sized tensors at once (SD U-Nets are large)
    # sample from original + delta, exactly the model a saved edit rebuilds (tuned itself differs by rounding)
    return ImagicEdit(prompt, e_tgt, e_opt, apply_delta(denoiser, delta), delta, settings, l1, l2)


def run_loss(cfg, schedule) -> DenoisingLoss:
    """The denoising loss a run trained with (its weighting), for Imagic's steps 1–2."""
    return DenoisingLoss(schedule, cfg.loss.weighting, cfg.loss.min_snr_gamma)
