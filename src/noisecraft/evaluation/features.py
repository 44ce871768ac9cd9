"""Feature extractors for sample-quality metrics, all offline and identified by a checksum.

- ``BuiltinFeatures("digits" | "fashion-mnist")``: a small CNN classifier trained on the real training split
  (``train_feature_net``; the recipe is ``scripts/train_feature_nets.py``). Its weights SHIP IN THE PACKAGE
  (``evaluation/weights/*.safetensors``, a few hundred kB) and are verified against the SHA-256 in
  ``WEIGHTS_SHA256`` when loaded, so the metric's network is the same file on every machine and FD numbers are
  comparable between machines. Features are the penultimate layer (post-ReLU, 128-d, scaled to mean square 1
  on the training split), the analogue of Inception's pool3 for FID (Heusel et al. 2017).
- ``ChannelFeatures(base)``: for colour images, the base network's features of each of R, G and B (each
  channel seen as a grey image) side by side (3·128-d), so that colour differences count. ``"rgb"`` is the
  Fashion-MNIST network used this way: the default for a user's own folder of images (see docs/evaluation.md
  for its limits: a 28-px grey clothing classifier, not an ImageNet network).
- ``InceptionFeatures(path)``: the standard FID network (InceptionV3, TF weights of 2015-12-05) loaded from a
  local TorchScript file; nothing is ever downloaded.

Every extractor maps images (N, C, H, W) in [−1, 1] to float64 features (N, d) on the CPU; the images may
live on any device (they are moved to the network's device).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn

from noisecraft.errors import NoisecraftError, check_choice
from noisecraft.evaluation.reference import NATIVE_RESOLUTION, REFERENCE_DATASETS, reference_images

FEATURE_VERSION = 2  # bump when the architecture or the training recipe changes
WEIGHTS_DIR = Path(__file__).parent / "weights"
# SHA-256 of the shipped weight files (written by scripts/train_feature_nets.py): the networks' identity
WEIGHTS_SHA256 = {
    "digits": "089eab6e2d5a27107447707c1b99017289c705150a8a28f369a7dc1e84004214",
    "fashion-mnist": "bc925747957243dd73640f5faa7a8b077f211da73ac715ea63b537a316eb37aa",
}
EXTRACTORS = (*REFERENCE_DATASETS, "rgb", "inception")
INCEPTION_HELP = (
    "FID with InceptionV3 needs a local TorchScript file of the standard FID weights, "
    "inception-2015-12-05.pt (the one StyleGAN2-ADA/StyleGAN3 and clean-fid use; download it once from "
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt "
    "on a machine with internet) and pass its path; noisecraft never downloads it"
)


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


def weights_path(dataset: str) -> Path:
    """The shipped weight file of the built-in network of `dataset`."""
    return WEIGHTS_DIR / f"features-{dataset}-v{FEATURE_VERSION}.safetensors"


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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
    """Penultimate-layer features of the built-in classifier of `dataset`, from the weights shipped in the
    package (checked against WEIGHTS_SHA256; a mismatch is an error, never a silent retrain)."""

    def __init__(self, dataset: str, device: str | torch.device = "cpu", path: str | Path | None = None):
        check_choice("feature dataset", dataset, REFERENCE_DATASETS)
        from safetensors import safe_open
        from safetensors.torch import load_file

        self.dataset = dataset
        self.resolution = NATIVE_RESOLUTION[dataset]
        self.path = Path(path) if path is not None else weights_path(dataset)
        if not self.path.is_file():
            raise NoisecraftError(
                f"feature weights {str(self.path)!r} are missing from the installation; reinstall noisecraft "
                "(or regenerate them with scripts/train_feature_nets.py)"
            )
        sha = file_sha256(self.path)
        if path is None and sha != WEIGHTS_SHA256[dataset]:
            raise NoisecraftError(
                f"feature weights {str(self.path)!r} have SHA-256 {sha[:16]}..., expected "
                f"{WEIGHTS_SHA256[dataset][:16]}...: the file is damaged or was replaced; reinstall noisecraft"
            )
        self.net = FeatureCNN(self.resolution)
        self.net.load_state_dict(load_file(str(self.path)))
        with safe_open(str(self.path), "pt") as f:
            meta = f.metadata() or {}
        self.test_accuracy = float(meta["test_accuracy"]) if "test_accuracy" in meta else None
        self.net.eval().requires_grad_(False).to(device)
        self.checksum = sha[:16]
        self.name = f"noisecraft-{dataset}-cnn-v{FEATURE_VERSION}"

    @torch.no_grad()
    def __call__(self, images: Tensor, batch: int = 1024) -> Tensor:
        """images (N, C, H, W) in [−1, 1] (any size; RGB is averaged to grey) → features (N, 128) float64."""
        images = _check_images(images)
        if images.shape[1] != 1:
            images = images.mean(1, keepdim=True)
        dev = next(self.net.parameters()).device
        out = [self.net.features(_resize(c.to(dev), self.resolution)).cpu() for c in images.split(batch)]
        return torch.cat(out).double()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "checksum": self.checksum, "test_accuracy": self.test_accuracy}


def _check_images(images: Tensor) -> Tensor:
    images = torch.as_tensor(images)
    if images.ndim != 4:
        raise NoisecraftError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    return images.to(torch.float32)


class ChannelFeatures:
    """Colour-aware features from a grey network: base(R), base(G), base(B) side by side (N, 3·d).

    Grey images are repeated into three equal channels, so a grey folder and its RGB copy score alike.
    """

    def __init__(self, base: BuiltinFeatures):
        self.base = base
        self.checksum = base.checksum
        self.name = f"{base.name}-per-channel-rgb"

    def __call__(self, images: Tensor, batch: int = 1024) -> Tensor:
        images = _check_images(images)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return torch.cat([self.base(images[:, c : c + 1], batch) for c in range(images.shape[1])], dim=1)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "checksum": self.checksum}


class InceptionFeatures:
    """The FID InceptionV3 (pool3, 2048-d) from a local TorchScript file; see INCEPTION_HELP."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        path = Path(path)
        if not path.is_file():
            raise NoisecraftError(f"Inception weights {str(path)!r} not found. {INCEPTION_HELP}")
        try:
            self.net = torch.jit.load(str(path), map_location=device).eval()
        except Exception as e:  # not a TorchScript archive
            raise NoisecraftError(f"could not load {str(path)!r} as TorchScript ({e}). {INCEPTION_HELP}") from None
        self.checksum = file_sha256(path)[:16]
        self.device = torch.device(device)
        self.name = "inception-v3-fid-2015-12-05"

    @torch.no_grad()
    def __call__(self, images: Tensor, batch: int = 64) -> Tensor:
        images = _check_images(images)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        from noisecraft.data.transforms import to_pixels

        u8 = to_pixels(images)  # the network resizes to 299 itself
        return torch.cat([self.net(c.to(self.device), return_features=True).cpu() for c in u8.split(batch)]).double()

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "checksum": self.checksum}


def get_extractor(
    name: str, inception_path: str | Path | None = None, device: str | torch.device = "cpu"
) -> BuiltinFeatures | ChannelFeatures | InceptionFeatures:
    """ "digits", "fashion-mnist" (built-in, shipped), "rgb" (the Fashion-MNIST network per colour channel:
    for any folder of images) or "inception" (needs inception_path)."""
    check_choice("feature extractor", name, EXTRACTORS)
    if name == "inception":
        if inception_path is None:
            raise NoisecraftError(f"--inception PATH is required for the inception extractor. {INCEPTION_HELP}")
        return InceptionFeatures(inception_path, device)
    if name == "rgb":
        return ChannelFeatures(BuiltinFeatures("fashion-mnist", device))
    return BuiltinFeatures(name, device)
