"""Guidance as denoiser transforms: classifier-free guidance and classifier guidance.

Both wrap a denoiser D(x, σ, **cond) → x̂0 into another denoiser, so every sampler works with them unchanged.
They act on the score through Tweedie's formula ∇ log p_σ(x) = (D(x; σ) − x)/σ², i.e. D = x + σ²·score:

- classifier-free guidance (Ho & Salimans 2022): score_w = score_u + w·(score_c − score_u), hence
  D_w = D_u + w·(D_c − D_u).  Convention: **w = 0 is the unconditional model, w = 1 the conditional model**,
  w > 1 extrapolates (diffusers' ``guidance_scale`` uses the same convention);
- classifier guidance (Dhariwal & Nichol 2021, Alg. 1/2): score_s = score + s·∇_x log p(y | x_σ, σ), hence
  D_s = D + s·σ²·∇_x log p(y | x_σ, σ).

With exact ingredients the two coincide: CFG at scale w equals classifier guidance of the *conditional*
model at scale w − 1 (or of the unconditional model at scale w), since ∇ log p(y|x) = score_c − score_u.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from noisecraft.core.denoiser import Denoiser, batch_sigma
from noisecraft.core.oracles import GaussianMixture
from noisecraft.core.precond import PARAMETERISATIONS, output_from_x0, x0_from_output
from noisecraft.core.process import expand
from noisecraft.errors import NoisecraftError, check_choice


@runtime_checkable
class Classifier(Protocol):
    """A noise-conditioned classifier: logits (B, K) of p(y | x_σ, σ) for a VE state x (B, ...), σ (B,)."""

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor: ...


def _check_scale(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise NoisecraftError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _labels(class_labels: Tensor | int | Sequence[int], x: Tensor) -> Tensor:
    """class labels as a (B,) int64 tensor on x's device, from an int, a list or a (B,) tensor."""
    y = torch.as_tensor(class_labels, dtype=torch.long, device=x.device)
    if y.ndim == 0:
        y = y.expand(x.shape[0])
    if y.shape != (x.shape[0],):
        raise NoisecraftError(f"class_labels must be one label or one per sample ({x.shape[0]}), got {tuple(y.shape)}")
    return y


def parse_interval(
    interval: tuple[float, float] | Sequence[float] | str | None,
) -> tuple[float, float] | None:
    """A guidance interval (σ_lo, σ_hi) from a pair or a "lo,hi" string; None means guide at every σ."""
    if interval is None:
        return None
    if isinstance(interval, str):
        try:
            interval = [float(v) for v in interval.split(",")]
        except ValueError:
            raise NoisecraftError(f"cfg interval must be 'sigma_lo,sigma_hi', e.g. '0.3,5', got {interval!r}") from None
    if len(interval) != 2:
        raise NoisecraftError(f"cfg interval must be two noise levels (sigma_lo, sigma_hi), got {interval!r}")
    lo, hi = float(interval[0]), float(interval[1])
    if not (0 <= lo < hi) or math.isnan(hi):
        raise NoisecraftError(f"cfg interval needs 0 <= sigma_lo < sigma_hi, got ({lo}, {hi})")
    return lo, hi


class CFGDenoiser:
    """Classifier-free guidance (Ho & Salimans 2022) as a denoiser: D_w = D_u + w·(D_c − D_u).

    The conditional and unconditional predictions come from ONE network call on the concatenated batch
    [x; x] with labels [y; null]. w = 0 gives the unconditional model, w = 1 the conditional one.

    Args:
        denoiser: a class-conditional denoiser called as ``denoiser(x, σ, class_labels=y, **cond)``.
        scale: guidance scale w >= 0.
        null_label: the label that selects the unconditional model (the one label dropout trained; by the
            noisecraft convention it is num_classes).
        interval: (σ_lo, σ_hi): guide only where σ_lo < σ <= σ_hi and use the plain conditional prediction
            elsewhere (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval"). None: everywhere.
        rescale: φ in [0, 1], CFG rescale (Lin et al. 2023, "Common diffusion noise schedules and sample
            steps are flawed", Sec. 3.4): the guided prediction is rescaled, per sample, to the
            std of the conditional prediction, and mixed: φ·rescaled + (1 − φ)·guided (in `rescale_space`).
        rescale_space: the parameterisation in which stds are matched: "v" (the paper's v-prediction models,
            default), "eps" (what diffusers does for ε-models), or any of PARAMETERISATIONS.
        sigma_data: σ_data of that parameterisation (1 gives the VP conventions).
    """

    def __init__(
        self,
        denoiser: Denoiser,
        scale: float,
        null_label: int,
        interval: tuple[float, float] | str | None = None,
        rescale: float = 0.0,
        rescale_space: str = "v",
        sigma_data: float = 1.0,
    ):
        self.denoiser = denoiser
        self.scale = _check_scale("cfg scale", scale)
        self.null_label = int(null_label)
        self.interval = parse_interval(interval)
        self.rescale = float(rescale)
        if not 0 <= self.rescale <= 1:
            raise NoisecraftError(f"cfg rescale must lie in [0, 1], got {rescale}")
        self.rescale_space = check_choice("rescale space", rescale_space, PARAMETERISATIONS)
        self.sigma_data = float(sigma_data)

    def active(self, sigma: Tensor) -> Tensor:
        """(B,) bool: where guidance applies (inside the interval)."""
        if self.interval is None:
            return torch.ones_like(sigma, dtype=torch.bool)
        lo, hi = self.interval
        return (sigma > lo) & (sigma <= hi)

    def __call__(self, x: Tensor, sigma: Tensor | float, *, class_labels: Tensor, **cond) -> Tensor:
        y = _labels(class_labels, x)  # (B,)
        return self.guide(x, sigma, {"class_labels": y}, {"class_labels": torch.full_like(y, self.null_label)}, cond)

    def guide(self, x: Tensor, sigma: Tensor | float, pos: dict, neg: dict, cond: dict) -> Tensor:
        """D_neg + w·(D_pos − D_neg) where the entries `pos` and `neg` (each (B, ...)) select the two branches
        (a label and the null label; a prompt's and the negative prompt's embedding) and `cond` is shared."""
        s_in = torch.as_tensor(sigma)
        # whether to guide at all is decided on the σ the sampler passed (a CPU scalar: no device sync per step)
        skip = self.scale == 1.0 or not bool(self.active(s_in if s_in.device.type == "cpu" else s_in.cpu()).any())
        sigma = batch_sigma(sigma, x)  # (B,)
        on = self.active(sigma)  # (B,)
        if skip:  # the guided prediction is the conditional one
            return self.denoiser(x, sigma, **pos, **cond)
        B = x.shape[0]
        both = self.denoiser(
            torch.cat([x, x]),
            torch.cat([sigma, sigma]),
            **{k: torch.cat([pos[k], neg[k]]) for k in pos},
            **{k: _double(v, B) for k, v in cond.items()},
        )  # (2B, ...)
        x0_c, x0_u = both[:B], both[B:]
        guided = x0_u + self.scale * (x0_c - x0_u)
        if self.rescale > 0:
            guided = self._rescale(x, sigma, guided, x0_c)
        return torch.where(on.reshape(-1, *([1] * (x.ndim - 1))), guided, x0_c)

    def _rescale(self, x: Tensor, sigma: Tensor, guided: Tensor, x0_c: Tensor) -> Tensor:
        """Match the per-sample std of the guided output to the conditional one in `rescale_space`.

        F = (x0 − c_skip·x)/c_out is affine in x0 at fixed (x, σ), so CFG itself is the same in every space,
        but the std of F is not: Lin et al. measure it on the network's v (or ε) output, so we map x̂0 there,
        rescale, mix with weight φ, and map back with x0 = c_skip·x + c_out·F.
        """
        kind, sd = self.rescale_space, self.sigma_data
        f_cfg = output_from_x0(kind, x, sigma, guided, sd)  # (B, ...)
        f_pos = output_from_x0(kind, x, sigma, x0_c, sd)
        dims = list(range(1, x.ndim))
        ratio = f_pos.std(dim=dims, keepdim=True) / f_cfg.std(dim=dims, keepdim=True).clamp(min=1e-12)
        f = self.rescale * (f_cfg * ratio) + (1 - self.rescale) * f_cfg
        return x0_from_output(kind, x, sigma, f, sd).to(x.dtype)


def _double(v, B: int):
    """Repeat a per-sample conditioning tensor (B, ...) for the [cond; uncond] batch; keep anything else."""
    if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] == B:
        return torch.cat([v, v])
    return v


class ClassifierGuidedDenoiser:
    """Classifier guidance (Dhariwal & Nichol 2021): D_s = D + s·σ²·∇_x log p(y | x_σ, σ).

    From Tweedie, D = x + σ²·∇ log p_σ(x); adding s·∇ log p(y | x) to the score adds s·σ²·∇ log p(y | x) to
    x̂0. The gradient is taken through the noisy classifier under ``torch.enable_grad`` (samplers run under
    no_grad), so this works for any sampler, deterministic or stochastic. The guided model is the
    unconditional one (``condition_model=False``) or the conditional one, which then also receives y.

    Args:
        denoiser: the model D(x, σ, **cond).
        classifier: logits (B, K) = classifier(x, σ) of p(y | x_σ, σ) for the VE state x.
        scale: classifier scale s >= 0 (s = 1, an exact classifier and an unconditional model sample p(x|y)).
        condition_model: pass class_labels on to the denoiser (a conditional model) or not (unconditional).
    """

    def __init__(self, denoiser: Denoiser, classifier: Classifier, scale: float, condition_model: bool = False):
        self.denoiser = denoiser
        self.classifier = classifier
        self.scale = _check_scale("classifier scale", scale)
        self.condition_model = condition_model

    def log_prob_grad(self, x: Tensor, sigma: Tensor, y: Tensor) -> Tensor:
        """∇_x log p(y | x_σ, σ), same shape as x."""
        # enable_grad: samplers run under no_grad; inference_mode(False) + clone: also under inference_mode
        with torch.inference_mode(False), torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            logp = self.classifier(xg, sigma.clone()).log_softmax(-1)  # (B, K)
            # samples are independent, so the gradient of the sum is the per-sample gradient
            (grad,) = torch.autograd.grad(logp.gather(1, y.clone()[:, None]).sum(), xg)
        return grad.to(x.dtype)

    def __call__(self, x: Tensor, sigma: Tensor | float, *, class_labels: Tensor, **cond) -> Tensor:
        sigma = batch_sigma(sigma, x)  # (B,)
        y = _labels(class_labels, x)  # (B,)
        if self.condition_model:
            cond = {**cond, "class_labels": y}
        x0 = self.denoiser(x, sigma, **cond)
        if self.scale == 0:
            return x0
        s2 = expand(sigma**2, x).to(x.dtype)
        return x0 + self.scale * s2 * self.log_prob_grad(x, sigma, y)


class ClassConditioned:
    """Bind class labels to a denoiser: calls without ``class_labels`` get the bound ones (an int or (B,))."""

    def __init__(self, denoiser: Denoiser, class_labels: int | Sequence[int] | Tensor):
        self.denoiser = denoiser
        self.class_labels = class_labels

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        cond.setdefault("class_labels", _labels(self.class_labels, x))
        return self.denoiser(x, sigma, **cond)


class MixtureClassifier:
    """The exact noisy classifier of a GaussianMixture: logits log w_k + log N(x; μ_k, Σ_k + σ²I), (B, K)."""

    def __init__(self, mixture: GaussianMixture):
        self.mixture = mixture
        self.components = [mixture.component(k) for k in range(mixture.num_components)]
        self.num_classes = mixture.num_components

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        logw = self.mixture.weights.log().to(x.device)
        return torch.stack([c.log_prob(x, sigma) for c in self.components], -1) + logw  # (B, K)


def num_classes_of(denoiser) -> int | None:
    """The number of classes a (wrapped) model was trained with, if it says so; None for unknown.

    Looks for ``num_classes`` on the denoiser or its network, diffusers' ``config.num_class_embeds``, and
    noisecraft's MLP ``class_embed`` (num_classes + 1 rows, the last one the null label).
    """
    for obj in (denoiser, getattr(denoiser, "net", None), getattr(denoiser, "denoiser", None)):
        if obj is None:
            continue
        n = getattr(obj, "num_classes", None)
        if isinstance(n, int):
            return n
        cfg = getattr(obj, "config", None)
        n = getattr(cfg, "num_classes", None) if cfg is not None else None
        if isinstance(n, int):
            return n
        n = getattr(cfg, "num_class_embeds", None) if cfg is not None else None
        if isinstance(n, int):
            return n - 1  # one row is the null label
        emb = getattr(obj, "class_embed", None)
        if isinstance(emb, torch.nn.Embedding):
            return emb.num_embeddings - 1
    return None


def build_guided_denoiser(
    denoiser: Denoiser,
    *,
    class_label: int | Sequence[int] | Tensor | None = None,
    cfg_scale: float | None = None,
    cfg_interval: tuple[float, float] | str | None = None,
    cfg_rescale: float = 0.0,
    classifier: Classifier | None = None,
    classifier_scale: float = 1.0,
    num_classes: int | None = None,
    null_label: int | None = None,
    sample_shape: tuple[int, ...] | None = None,
) -> Denoiser:
    """Assemble the denoiser the `sample` command runs: class conditioning, CFG and/or classifier guidance.

    Args:
        denoiser: the trained model.
        class_label: the class to generate (an int, or one per sample); None: unconditional, no guidance.
        cfg_scale: classifier-free guidance scale w (0: unconditional, 1: conditional; None: no CFG, the
            model is used conditionally when it has classes).
        cfg_interval: (σ_lo, σ_hi) or "lo,hi": guide only inside this σ range.
        cfg_rescale: CFG rescale φ in [0, 1].
        classifier: a noisy classifier (see models/classifier.py) for classifier guidance.
        classifier_scale: classifier scale s.
        num_classes: the model's number of classes (0 for unconditional); inferred from the model if omitted.
        null_label: the unconditional label (default num_classes).
        sample_shape: the per-sample shape (C, H, W) the model generates, checked against the classifier.
    """
    if num_classes is None:
        num_classes = num_classes_of(denoiser)
    clf_classes = getattr(classifier, "num_classes", None) if classifier is not None else None
    if class_label is None:
        if cfg_scale is not None or classifier is not None:
            raise NoisecraftError("guidance needs a class: pass class_label (--class N)")
        return denoiser
    labels = torch.as_tensor(class_label, dtype=torch.long).reshape(-1)
    valid = num_classes if num_classes else clf_classes
    if valid is not None and ((labels < 0) | (labels >= valid)).any():
        bad = [v for v in labels.tolist() if not 0 <= v < valid]
        raise NoisecraftError(f"class {bad[0]} is outside the model's labels 0..{valid - 1}")
    if (labels < 0).any():
        raise NoisecraftError(f"class labels must be >= 0, got {labels.tolist()}")
    if classifier is not None:
        classifier_scale = _check_scale("classifier scale", classifier_scale)
        if num_classes and clf_classes is not None and clf_classes != num_classes:
            raise NoisecraftError(
                f"the classifier knows {clf_classes} classes but the model {num_classes}; "
                "train the classifier on the model's dataset"
            )
        check = getattr(classifier, "check_input_shape", None)
        if sample_shape is not None and check is not None:
            check(tuple(sample_shape))
    if cfg_scale is None and (cfg_interval is not None or cfg_rescale):
        raise NoisecraftError("a cfg interval or cfg rescale needs a cfg scale (--cfg W)")
    conditional = bool(num_classes)
    if not conditional and (cfg_scale is not None and cfg_scale != 1.0):
        raise NoisecraftError(
            "classifier-free guidance needs a class-conditional model trained with label dropout; this model "
            "has no classes (use --classifier for classifier guidance)"
        )
    if not conditional and classifier is None:
        raise NoisecraftError("this model has no classes: --class needs a class-conditional model or a --classifier")
    out: Denoiser = denoiser
    if conditional and cfg_scale is not None:
        cfg_scale = _check_scale("cfg scale", cfg_scale)
        out = CFGDenoiser(
            denoiser, cfg_scale, num_classes if null_label is None else null_label, cfg_interval, cfg_rescale
        )
    if classifier is not None:
        out = ClassifierGuidedDenoiser(out, classifier, classifier_scale, condition_model=conditional)
    return ClassConditioned(out, class_label)
