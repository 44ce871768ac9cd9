"""Classifier-free guidance with prompts and negative prompts (GLIDE, Nichol et al. 2022; Ho & Salimans 2022).

A text-conditioned denoiser takes its prompt as the ``cond`` entries text_states/text_mask/text_pooled (see
models/text.py). ``PromptCFGDenoiser`` is ``CFGDenoiser`` with the negative prompt's embedding in place of the
null label:

    D_w(x; σ) = D(x; σ, neg) + w·(D(x; σ, prompt) − D(x; σ, neg)),

w = 0 the negative-prompt model, w = 1 the prompt-conditional model. With the empty prompt "" as the negative
(the caption dropout of training replaces captions by ""), neg is the unconditional model. σ interval and rescale
work as for class labels.
"""

from __future__ import annotations

from torch import Tensor

from noisecraft.core.denoiser import Denoiser
from noisecraft.errors import NoisecraftError
from noisecraft.models.text import TEXT_KEYS
from noisecraft.sampling.guidance import CFGDenoiser


class PromptCFGDenoiser(CFGDenoiser):
    """CFG of a text-conditioned denoiser; the prompt arrives per call in ``cond``, the negative is bound.

    Args:
        denoiser: D(x, σ, text_states=, text_mask=, text_pooled=).
        scale: guidance scale w >= 0.
        negative: the negative prompt's embedding {text_states (1 or B, T, D), text_mask, text_pooled}.
        interval, rescale, rescale_space, sigma_data: as for CFGDenoiser.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        scale: float,
        negative: dict[str, Tensor],
        interval: tuple[float, float] | str | None = None,
        rescale: float = 0.0,
        rescale_space: str = "v",
        sigma_data: float = 1.0,
    ):
        super().__init__(denoiser, scale, 0, interval, rescale, rescale_space, sigma_data)
        missing = [k for k in TEXT_KEYS if k not in negative]
        if missing:
            raise NoisecraftError(f"the negative prompt embedding lacks {', '.join(missing)}")
        self.negative = dict(negative)

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:  # type: ignore[override]
        missing = [k for k in TEXT_KEYS if k not in cond]
        if missing:
            raise NoisecraftError("prompt guidance needs the prompt's embedding (text_states, text_mask, text_pooled)")
        B = x.shape[0]
        pos = {k: cond.pop(k) for k in TEXT_KEYS}
        neg = {k: v.to(x.device).expand(B, *v.shape[1:]) for k, v in self.negative.items()}
        return self.guide(x, sigma, pos, neg, cond)


class PromptConditioned:
    """Bind per-sample text embeddings to a denoiser (a prompt per sample, no guidance): entries (N, ...)."""

    def __init__(self, denoiser: Denoiser, text: dict[str, Tensor]):
        self.denoiser = denoiser
        self.text = text

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        for k, v in self.text.items():
            cond.setdefault(k, v.to(x.device).expand(x.shape[0], *v.shape[1:]))
        return self.denoiser(x, sigma, **cond)


def prompt_denoiser(
    denoiser: Denoiser,
    encoder,
    prompts: list[str],
    negative_prompt: str = "",
    cfg_scale: float | None = None,
    cfg_interval: tuple[float, float] | str | None = None,
    cfg_rescale: float = 0.0,
) -> tuple[Denoiser, dict[str, Tensor]]:
    """The denoiser the `sample` command runs for prompts, and the per-sample conditioning (N, ...) to pass it.

    prompts: one per sample. With cfg_scale None the model is used with the prompt alone (w = 1); otherwise
    D_w = D(neg) + w·(D(prompt) − D(neg)), neg the negative prompt ("" by default: the unconditional model).
    """
    if encoder is None:
        raise NoisecraftError("--prompt needs a text-conditioned run (trained with --text)")
    cond = encoder.encode(prompts)
    if cfg_scale is None:
        if cfg_interval is not None or cfg_rescale:
            raise NoisecraftError("a cfg interval or cfg rescale needs a cfg scale (--cfg W)")
        if negative_prompt:
            raise NoisecraftError("--negative-prompt acts through guidance: give a --cfg scale too")
        return denoiser, cond
    return PromptCFGDenoiser(denoiser, cfg_scale, encoder.encode(negative_prompt), cfg_interval, cfg_rescale), cond


def run_prompt_denoiser(
    model,
    prompts: list[str] | None,
    num: int,
    negative_prompt: str = "",
    cfg_scale: float | None = None,
    cfg_interval: tuple[float, float] | str | None = None,
    cfg_rescale: float = 0.0,
    other_conditioning: bool = False,
    name: str = "the run",
) -> tuple[Denoiser, dict[str, Tensor]] | None:
    """The prompt path of `noisecraft sample` (and the studio) for a loaded model (interop.pretrained.Pretrained).

    prompts: the prompts, sample i uses prompts[i % len(prompts)]; None: no prompt, and None is returned (the
    caller uses class labels / classifier guidance), which a text-conditioned model refuses. other_conditioning:
    a class label or classifier was also asked for, which prompts do not combine with.
    """
    if prompts is None:
        if model.text_encoder is not None:
            raise NoisecraftError(f"{name} is a text-conditioned run: pass --prompt TEXT (or --prompts FILE)")
        return None
    if other_conditioning:
        raise NoisecraftError("--prompt/--prompts do not combine with --class or --classifier")
    per_sample = [prompts[i % len(prompts)] for i in range(num)]
    return prompt_denoiser(
        model.denoiser, model.text_encoder, per_sample, negative_prompt, cfg_scale, cfg_interval, cfg_rescale
    )
