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
"""

from __future__ import annotations

import torch
from torch import Tensor

from noisecraft.training.config import TrainConfig
from noisecraft.training.defaults import eval_sample_count

HELDOUT_LABEL = "periodic, against the folder's held-out part (small counts: compare with its noise floor)"
MAX_OTHERS = 1024  # training images kept for the noise floor (a seeded subset)


def _stack(dataset, indices) -> Tensor:
    return torch.stack([dataset[int(i)]["x"] for i in indices])


class HeldoutEval:
    """Scores of samples against the held-out part of cfg.data's folder; reference and floor computed once."""

    def __init__(self, cfg: TrainConfig, extractor=None, device: str | torch.device = "cpu"):
        import dataclasses

        from noisecraft.data.folder import FolderDataset
        from noisecraft.evaluation.evaluate import ReferenceSet, default_features
        from noisecraft.evaluation.features import get_extractor

        data = dataclasses.replace(cfg.data, flip=False, crop="center", limit=None)
        held = FolderDataset(data, split="holdout")
        train = FolderDataset(data, split="train")
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:MAX_OTHERS]
        self.reference = ReferenceSet(
            str(cfg.data.source),
            "folder",
            _stack(held, range(len(held))),
            _stack(train, pick),
            "the folder's training part vs its held-out part",
        )
        self.num_reference = len(held)
        self.num = min(eval_sample_count(cfg, len(held)), len(pick))
        if extractor is None:
            extractor = get_extractor(default_features(self.reference, cfg.data.channels), device=device)
        self.extractor = extractor

    def score(self, images: Tensor) -> dict:
        """The library's evaluation of images (N, C, H, W) in [−1, 1] against the held-out part, with the floor
        (as a dict: protocol, scores, noise_floor)."""
        from noisecraft.evaluation.evaluate import evaluate_images

        res = evaluate_images(
            images, self.reference, self.extractor, with_floor=True, fd_boots=0, protocol={"label": HELDOUT_LABEL}
        )
        return res.to_dict()

    def __call__(self, cfg: TrainConfig, model, schedule) -> dict:
        """Draw self.num samples (seeds 0..num−1) from `model` and score them."""
        from noisecraft.training.samples import draw_samples

        x = draw_samples(cfg, model, schedule, self.num)
        return {**self.score(x), "sampler": cfg.sample_sampler, "steps": cfg.sample_steps}


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
