"""Quality while a run trains on a user's folder: FD/KID of its samples against the folder's held-out part.

The held-out part (data.holdout, chosen by a hash of each file's path) never enters training. It becomes the
evaluation library's ``ReferenceSet`` with training images as the "others", so the noise floor is the same
metrics between as many training images as there are samples and the held-out part: the best a model can score
on this split (Heusel et al. 2017 for FD, Bińkowski et al. 2018 for KID, which stays unbiased at the small
counts a folder gives). Reference features and floor are computed once per run.

Feature network: the library's default for a folder (``evaluation.evaluate.default_features``: the shipped
Fashion-MNIST CNN, per colour channel for colour images). Its limits (docs/guide/evaluation.md): it was
trained on 28-px grey clothes, not on the user's kind of images, so it ranks runs on one folder but its
numbers mean nothing across folders, and it does not see detail finer than its input size. Samples are scored
as saved (clamped, 8-bit).

Text runs: sample i is drawn with the first caption of held-out image i (cycled), so samples and reference show
the same captions, and the score is a conditional one at CFG scale 1. A latent run's samples are decoded first.
``scenes`` has no folder to hold out from: its test split (Fashion-MNIST test items) is the held-out part.
"""

from __future__ import annotations

import torch
from torch import Tensor

from noisecraft.training.config import TrainConfig
from noisecraft.training.defaults import eval_sample_count

HELDOUT_LABEL = "periodic, against the folder's held-out part (small counts: compare with its noise floor)"
SCENES_LABEL = "periodic, against scenes of the test split (small counts: compare with its noise floor)"
MAX_OTHERS = 1024  # training images kept for the noise floor (a seeded subset)
SCENES_HELDOUT = 512  # scenes of the test split in the held-out reference


def _stack(dataset, indices) -> Tensor:
    return torch.stack([dataset[int(i)]["x"] for i in indices])


def has_heldout(cfg: TrainConfig) -> bool:
    """Whether a periodic evaluation of this run scores against a held-out part: a folder, or scenes."""
    return cfg.data.kind == "folder" or cfg.data.source == "scenes"


def heldout_parts(cfg: TrainConfig):
    """(held-out dataset, training dataset, what the floor compares) of cfg.data in pixels: centre crops, no
    flips, captions where the run is text-conditioned."""
    import dataclasses

    data = dataclasses.replace(
        cfg.data, flip=False, crop="center", limit=None, latent=None, captions=cfg.text.enabled, labels=False
    )
    if data.source == "scenes":
        from noisecraft.data.scenes import ScenesDataset

        test = dataclasses.replace(data, split="test", scenes_size=min(data.scenes_size, SCENES_HELDOUT))
        return ScenesDataset(test), ScenesDataset(data), "scenes of the train split vs of the test split"
    from noisecraft.data.folder import FolderDataset

    held, train = FolderDataset(data, split="holdout"), FolderDataset(data, split="train")
    return held, train, "the folder's training part vs its held-out part"


class HeldoutEval:
    """Scores of samples against the held-out part of cfg.data (a folder's, or the scenes test split); reference,
    floor and, for a text run, the held-out captions computed once."""

    def __init__(self, cfg: TrainConfig, extractor=None, device: str | torch.device = "cpu"):
        from noisecraft.data.latent_cache import caption_choices
        from noisecraft.evaluation.evaluate import ReferenceSet, default_features
        from noisecraft.evaluation.features import get_extractor

        held, train, floor_label = heldout_parts(cfg)
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:MAX_OTHERS]
        self.reference = ReferenceSet(
            str(cfg.data.source), "folder", _stack(held, range(len(held))), _stack(train, pick), floor_label
        )
        self.num_reference = len(held)
        self.label = SCENES_LABEL if cfg.data.source == "scenes" else HELDOUT_LABEL
        self.num = min(eval_sample_count(cfg, len(held)), len(pick))
        # a text run: sample i shows held-out image i's first caption (cycled)
        every = [caption_choices(held, i)[0] for i in range(len(held))] if cfg.text.enabled else []
        self.captions = [every[i % len(every)] for i in range(self.num)] if every else None
        if extractor is None:
            extractor = get_extractor(default_features(self.reference, cfg.data.channels), device=device)
        self.extractor = extractor

    def score(self, images: Tensor) -> dict:
        """The library's evaluation of images (N, C, H, W) in [−1, 1] against the held-out part, with the floor
        (as a dict: protocol, scores, noise_floor)."""
        from noisecraft.evaluation.evaluate import evaluate_images

        res = evaluate_images(
            images, self.reference, self.extractor, with_floor=True, fd_boots=0, protocol={"label": self.label}
        )
        return res.to_dict()

    def __call__(self, cfg: TrainConfig, model, schedule, encoder=None) -> dict:
        """Draw self.num samples (seeds 0..num−1) from `model` (a text run: with self.captions, embedded by
        `encoder`, default the run's own) and score them."""
        from noisecraft.training import samples

        cond, extra = None, {}
        if self.captions is not None:
            if encoder is None:
                from noisecraft.models.text import load_text_encoder

                encoder = load_text_encoder(cfg.text)
            cond = encoder.encode(self.captions, device=next(model.parameters()).device)
            extra = {"captions": self.captions, "cfg_scale": 1.0}
        x = samples.draw_samples(cfg, model, schedule, self.num, cond)
        return {**self.score(x), "sampler": cfg.sample_sampler, "steps": cfg.sample_steps, **extra}


def roughness(images: Tensor) -> Tensor:
    """Mean absolute difference between horizontally and vertically adjacent pixels, per image (N,)."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return (dx + dy) / 2


def tile_defects(images: Tensor, reference: Tensor) -> dict[str, float]:
    """Fractions of samples (N, C, H, W) in [−1, 1] that are failed tiles of the kinds an unstable model draws:

    - "flat": one colour (pixel standard deviation below 0.03, i.e. under 4 grey levels);
    - "saturated": over half the pixels a pure primary or secondary colour (every channel within 8 levels of
      0 or 255, channels not all equal: pure red, cyan, magenta ..., not black or white);
    - "noise": rougher (``roughness``) than 1.25× the roughest 1 % of the reference images;
    - "bad": any of these. Reference: real images of the same kind, for the noise threshold.
    """
    x = images.clamp(-1, 1).float()
    n = len(x)
    flat = x.flatten(1).std(dim=1) < 0.03
    extreme = ((x.abs() - 1).abs() < 8 / 127.5).all(dim=1)  # (N, H, W): every channel at 0 or 255
    mixed = (x.amax(dim=1) - x.amin(dim=1)) > 1.0  # channels not all equal
    saturated = (extreme & mixed).flatten(1).float().mean(1) > 0.5
    limit = 1.25 * torch.quantile(roughness(reference.float()), 0.99)
    noise = roughness(x) > limit
    bad = flat | saturated | noise
    return {
        k: float(v.float().sum()) / n
        for k, v in (("flat", flat), ("saturated", saturated), ("noise", noise), ("bad", bad))
    }
