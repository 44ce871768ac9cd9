"""Feature extractors for sample-quality metrics, all offline and identified by a checksum.

- ``BuiltinFeatures("digits" | "fashion-mnist")``: a small CNN classifier that noisecraft trains
  deterministically (fixed seed, one thread, fixed order) on the real training split, caches under
  $NOISECRAFT_CACHE or ~/.cache/noisecraft, and identifies by the SHA-256 of its weights. Features are the
  penultimate layer (post-ReLU, 128-d, scaled to mean square 1 on the training split), the analogue of
  Inception's pool3 for FID (Heusel et al. 2017).
  Scores computed with the same checksum are comparable between runs and machines that share the cache file.
- ``InceptionFeatures(path)``: the standard FID network (InceptionV3, TF weights of 2015-12-05) loaded from a
  local TorchScript file; nothing is ever downloaded.

Every extractor maps images (N, C, H, W) in [−1, 1] to float64 features (N, d).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.evaluation.reference import NATIVE_RESOLUTION, REFERENCE_DATASETS, reference_images

FEATURE_VERSION = 2  # bump when the architecture or the training recipe changes
INCEPTION_HELP = (
    "FID with InceptionV3 needs a local TorchScript file of the standard FID weights, "
    "inception-2015-12-05.pt (the one StyleGAN2-ADA/StyleGAN3 and clean-fid use; download it once from "
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt "
    "on a machine with internet) and pass its path; noisecraft never downloads it"
)


def cache_dir() -> Path:
    """$NOISECRAFT_CACHE, else ~/.cache/noisecraft."""
    return Path(os.environ.get("NOISECRAFT_CACHE") or Path.home() / ".cache" / "noisecraft")


def _resize(x: Tensor, size: int) -> Tensor:
    """(N, C, H, W) → (N, C, size, size), area-averaging when shrinking, bilinear when growing."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if x.shape[-1] > size:
        return nn.functional.interpolate(x, size=(size, size), mode="area")
    return nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class FeatureCNN(nn.Module):
    """Two conv blocks, a 128-d hidden layer (the features) and a linear classifier."""

    def __init__(self, resolution: int, num_classes: int = 10, width: int = 16, dim: int = 128):
        super().__init__()
        pool = 2 if resolution <= 8 else 4  # 8 → 4; 28 → 7
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            *([nn.MaxPool2d(2)] if pool == 4 else []),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (resolution // pool) ** 2, dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(dim, num_classes)
        # one scalar fixed after training so that the real training features have mean square 1: keeps FD and
        # the cubic KID kernel (aᵀb/d + 1)³ in a sensible range; part of the weights, hence of the checksum
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x) * self.feature_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def weights_checksum(state: dict[str, Tensor]) -> str:
    """SHA-256 (first 16 hex digits) of the weights, in key order: the extractor's identity."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


def train_feature_net(
    dataset: str, epochs: int | None = None, seed: int = 0, limit: int | None = None
) -> tuple[FeatureCNN, float]:
    """Train the built-in feature CNN on the real training split; returns (net, test accuracy).

    Deterministic: fixed seed, fixed batch order, one CPU thread, float32. `limit` trains on the first
    `limit` training images only (for quick checks; the cached extractor always uses the whole split).
    """
    check_choice("feature dataset", dataset, REFERENCE_DATASETS)
    res = NATIVE_RESOLUTION[dataset]
    epochs = epochs if epochs is not None else (30 if dataset == "digits" else 2)
    x, y = reference_images(dataset, "train")
    x, y = x[:limit], y[:limit]
    xt, yt = reference_images(dataset, "test")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = FeatureCNN(res)
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        batch = 64 if dataset == "digits" else 128
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), batch):
                idx = perm[i : i + batch]
                loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            f2 = torch.cat([net.body(c) for c in x.split(1024)]).pow(2).mean()
            net.feature_scale.fill_(float(f2.rsqrt()))
            acc = float(torch.cat([net(c).argmax(1) for c in xt.split(1024)]).eq(yt).double().mean())
    finally:
        torch.set_num_threads(threads)
    return net, acc


class BuiltinFeatures:
    """Penultimate-layer features of the built-in classifier of `dataset`; trains and caches it on first use."""

    def __init__(self, dataset: str, cache: str | Path | None = None, retrain: bool = False):
        check_choice("feature dataset", dataset, REFERENCE_DATASETS)
        from safetensors.torch import load_file, save_file

        self.dataset = dataset
        self.resolution = NATIVE_RESOLUTION[dataset]
        root = Path(cache) if cache is not None else cache_dir()
        path = root / f"features-{dataset}-v{FEATURE_VERSION}.safetensors"
        self.net = FeatureCNN(self.resolution)
        if path.exists() and not retrain:
            self.net.load_state_dict(load_file(str(path)))
            meta = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
            self.test_accuracy = meta.get("test_accuracy")
        else:
            self.net, self.test_accuracy = train_feature_net(dataset)
            root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp))
            tmp.replace(path)
            meta = {"dataset": dataset, "version": FEATURE_VERSION, "test_accuracy": self.test_accuracy}
            path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        self.net.eval()
        self.path = path
        self.checksum = weights_checksum(self.net.state_dict())
        self.name = f"noisecraft-{dataset}-cnn-v{FEATURE_VERSION}"

    @torch.no_grad()
    def __call__(self, images: Tensor, batch: int = 1024) -> Tensor:
        """images (N, C, H, W) in [−1, 1] (any size; RGB is averaged to grey) → features (N, 128) float64."""
        images = torch.as_tensor(images, dtype=torch.float32)
        if images.ndim != 4:
            raise NoisecraftError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if images.shape[1] != 1:
            images = images.mean(1, keepdim=True)
        out = [self.net.features(_resize(c, self.resolution)) for c in images.split(batch)]
        return torch.cat(out).double()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "checksum": self.checksum, "test_accuracy": self.test_accuracy}


class InceptionFeatures:
    """The FID InceptionV3 (pool3, 2048-d) from a local TorchScript file; see INCEPTION_HELP."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise NoisecraftError(f"Inception weights {str(path)!r} not found. {INCEPTION_HELP}")
        try:
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as e:  # not a TorchScript archive
            raise NoisecraftError(f"could not load {str(path)!r} as TorchScript ({e}). {INCEPTION_HELP}") from None
        self.checksum = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self.name = "inception-v3-fid-2015-12-05"

    @torch.no_grad()
    def __call__(self, images: Tensor, batch: int = 64) -> Tensor:
        images = torch.as_tensor(images, dtype=torch.float32)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        from noisecraft.data.transforms import to_pixels

        u8 = to_pixels(images)  # the network resizes to 299 itself
        return torch.cat([self.net(c, return_features=True) for c in u8.split(batch)]).double()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "checksum": self.checksum}


def get_extractor(name: str, inception_path: str | Path | None = None, cache: str | Path | None = None):
    """ "digits", "fashion-mnist" (built-in) or "inception" (needs inception_path)."""
    check_choice("feature extractor", name, (*REFERENCE_DATASETS, "inception"))
    if name == "inception":
        if inception_path is None:
            raise NoisecraftError(f"--inception PATH is required for the inception extractor. {INCEPTION_HELP}")
        return InceptionFeatures(inception_path)
    return BuiltinFeatures(name, cache=cache)
