"""Device placement without a GPU: models and inputs live on PyTorch's `meta` device, so any tensor that a
sampler, guidance, an edit or the evaluation creates on the CPU (without the input's device) and mixes with
them raises "Tensor on device cpu is not on the expected device meta", as it would fail on CUDA.

(0-dim CPU tensors, e.g. a σ, mix with any device, on CUDA as here: they are allowed.)
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from noisecraft.core.schedules import make_schedule
from noisecraft.models.factory import ModelConfig, build_denoiser
from noisecraft.sampling.generate import generate, model_device, resolve_device
from noisecraft.sampling.samplers import SAMPLERS
from noisecraft.sampling.steps import step_sigmas

META = torch.device("meta")
# adaptive chooses its step sizes from the values of its error estimates (data-dependent control flow), which a
# meta tensor does not have: it is run under ValuesReadAsZero below
READS_VALUES = {"adaptive"}


def meta_model(schedule: str = "edm", parameterisation: str = "edm", num_classes: int = 0):
    cfg = ModelConfig(
        arch="unet",
        preset="tiny",
        channels=1,
        resolution=8,
        num_classes=num_classes,
        schedule=schedule,
        parameterisation=parameterisation,
        net_kwargs={"block_out_channels": [8, 8, 8], "norm_num_groups": 4},
    )
    den, sched = build_denoiser(cfg)
    return den.to(META).eval().requires_grad_(False), sched


def gens(n: int):
    return [torch.Generator().manual_seed(i) for i in range(n)]


def test_meta_catches_a_cpu_tensor():
    """The premise: mixing a CPU batch tensor into meta tensors fails."""
    x = torch.zeros(2, 3, device=META)
    with pytest.raises(RuntimeError, match="device"):
        x * torch.ones(2, 3)


@pytest.mark.parametrize("schedule,param", [("edm", "edm"), ("linear", "eps")])  # linear: t-conditioned
@pytest.mark.parametrize("name", sorted(set(SAMPLERS) - READS_VALUES))
def test_every_sampler_stays_on_the_model_device(name, schedule, param):
    den, sched = meta_model(schedule, param, num_classes=3)
    sig = step_sigmas(sched, 3)
    x = float(sig[0]) * torch.randn(2, 1, 8, 8, device=META)
    cond = {"class_labels": torch.tensor([0, 2], device=META)}
    with torch.no_grad():
        y = SAMPLERS[name](den, x, sig, cond=cond, generator=gens(2))
    assert y.device == META and y.shape == x.shape


class ValuesReadAsZero(TorchDispatchMode):
    """Meta tensors whose values are read (copied to the CPU, .item()) read as zeros, and a meta mask selects
    every row (torch's meta_nonzero_assume_all_nonzero); everything else runs as usual, so a CPU tensor mixed
    with the meta state still fails. With zero error estimates an adaptive solver accepts every step (its
    acceptance masks are all true, as assumed) and grows its steps to the end."""

    def __enter__(self):
        import torch.fx.experimental._config as fx_config

        self._patch = fx_config.patch(meta_nonzero_assume_all_nonzero=True)
        self._patch.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._patch.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        src = args[0] if args and torch.is_tensor(args[0]) else None
        if src is not None and src.device == META:
            if func is torch.ops.aten._to_copy.default and kwargs.get("device") == torch.device("cpu"):
                return torch.zeros(src.shape, dtype=kwargs.get("dtype") or src.dtype)
            if func is torch.ops.aten._local_scalar_dense.default:
                return 0
        return func(*args, **kwargs)


@pytest.mark.parametrize("method", ["dpm12", "bs32"])
@pytest.mark.parametrize("schedule,param", [("edm", "edm"), ("linear", "eps")])
def test_adaptive_stays_on_the_model_device(method, schedule, param):
    den, sched = meta_model(schedule, param, num_classes=3)
    sig = step_sigmas(sched, 3)
    x = float(sig[0]) * torch.randn(2, 1, 8, 8, device=META)
    cond = {"class_labels": torch.tensor([0, 2], device=META)}
    info: dict = {}
    with torch.no_grad(), ValuesReadAsZero():
        y = SAMPLERS["adaptive"](den, x, sig, cond=cond, generator=gens(2), method=method, info=info)
    assert y.device == META and y.shape == x.shape
    assert info["steps"].tolist() == [info["steps"][0].item()] * 2 and info["steps"][0] >= 1


def test_generate_uses_the_model_device_by_default():
    den, sched = meta_model(num_classes=3)
    assert model_device(den) == META
    y = generate(den, sched, (1, 8, 8), [0, 1, 2], steps=2, class_labels=torch.arange(3), to_cpu=False)
    assert y.device == META and y.shape == (3, 1, 8, 8)


def test_guidance_stays_on_the_model_device():
    from noisecraft.models.classifier import ClassifierConfig, NoisyClassifier
    from noisecraft.sampling.guidance import build_guided_denoiser

    den, sched = meta_model(num_classes=3)
    clf = NoisyClassifier(ClassifierConfig(resolution=8, channels=1, num_classes=3, width=8, mult=(1, 2)))
    clf = clf.to(META).eval()
    for kw in (
        {"cfg_scale": 3.0, "cfg_interval": "0.1,5", "cfg_rescale": 0.5},
        {"classifier": clf, "classifier_scale": 2.0},
    ):
        guided = build_guided_denoiser(den, class_label=1, num_classes=3, sample_shape=(1, 8, 8), **kw)
        assert model_device(guided) == META
        y = generate(guided, sched, (1, 8, 8), [0, 1], sampler="dpmpp_2m", steps=2, to_cpu=False)
        assert y.device == META


def test_editing_stays_on_the_model_device():
    from noisecraft.editing.edits import interpolate, swap_class
    from noisecraft.editing.inpaint import inpaint
    from noisecraft.editing.sdedit import img2img
    from noisecraft.sampling.inversion import invert, regenerate

    den, sched = meta_model(num_classes=3)
    sig = step_sigmas(sched, 4)
    x = torch.zeros(2, 1, 8, 8, device=META)
    mask = torch.zeros(1, 8, 8)  # given on the CPU, as the command line loads it; inpaint moves it to x's device
    cond = {"class_labels": torch.tensor([0, 1], device=META)}
    with torch.no_grad():
        assert img2img(den, x, sig, 0.5, cond=cond, generator=gens(2)).device == META
        for method in ("replace", "repaint"):
            y = inpaint(den, x, mask, sig, method=method, jump_length=2, resample=2, cond=cond, generator=gens(2))
            assert y.device == META
        # iters=0: the explicit inversion; the fixed-point refinement (iters > 0) reads its residuals' values
        z = invert(den, x, sig, iters=0, cond=cond)
        assert z.device == META and regenerate(den, z, sig, cond=cond).device == META
        frames = interpolate(den, x[:1], x[1:], sig, [0.0, 0.5, 1.0])
        assert frames.device == META
        assert swap_class(den, x, sig, 0, 2, guidance=2.0, null_label=3).device == META


def test_evaluation_samples_on_the_model_device(monkeypatch):
    """evaluate_denoiser and periodic_eval draw their samples on the model's device (never a CPU default) and
    build the feature network there."""
    from noisecraft.evaluation import evaluate, features
    from noisecraft.sampling import generate as gen_mod

    den, sched = meta_model()
    seen = []
    real_generate = gen_mod.generate

    def spy(*args, **kw):  # run the real sampler on meta, then hand the metric CPU images to score
        y = real_generate(*args, **{**kw, "to_cpu": False})
        seen.append(y.device)
        return torch.rand(y.shape) * 2 - 1

    monkeypatch.setattr(gen_mod, "generate", spy)
    feats = features.BuiltinFeatures("digits")
    res, _ = evaluate.evaluate_denoiser(den, sched, "digits", feats, shape=(1, 8, 8), num=8, steps=2, with_floor=False)
    assert seen == [META] and res.protocol.num_samples == 8
    made_on = []
    monkeypatch.setattr(features, "get_extractor", lambda name, *a, device="cpu", **k: made_on.append(device) or feats)
    evaluate.periodic_eval(den, sched, "digits", (1, 8, 8), num=8, steps=2)
    assert seen == [META, META] and made_on == [META]


def test_features_accept_images_on_another_device():
    from noisecraft.evaluation.features import BuiltinFeatures

    f = BuiltinFeatures("digits", device=META)
    out = f.net.features(torch.zeros(2, 1, 8, 8, device=META))
    assert out.device == META and out.shape == (2, 128)


def test_load_run_and_device_names(tmp_path):
    from noisecraft.errors import NoisecraftError

    assert resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(NoisecraftError, match="not a device name"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(NoisecraftError, match="no CUDA device"):
            resolve_device("cuda")
    assert make_schedule("edm")  # the σ list is a CPU float64 list whatever the device: samplers read floats
    assert step_sigmas(make_schedule("edm"), 3).device == torch.device("cpu")


def test_periodic_eval_in_training_hides_only_data_errors(tmp_path, monkeypatch, capsys):
    """A data or disk problem in the periodic evaluation is a warning; a bug (here the error a CPU tensor
    meeting a CUDA one raises) stops the run instead of hiding as a warning."""
    from noisecraft.errors import NoisecraftError
    from noisecraft.evaluation import evaluate
    from noisecraft.training.config import TrainConfig
    from noisecraft.training.loop import train

    def cfg(out):
        return TrainConfig.from_dict(
            {
                "data": {"source": "digits", "resolution": 8},
                "model": {"arch": "mlp", "preset": "tiny", "channels": 1, "resolution": 8, "schedule": "edm"},
                "trackers": [],
                "sample_every": 0,
                "steps": 2,
                "batch_size": 8,
                "checkpoint_every": 2,
                "eval_every": 1,
                "eval_count": 8,
                "out_dir": str(out),
            }
        )

    def data_error(*a, **k):
        raise NoisecraftError("features contain NaN")

    monkeypatch.setattr(evaluate, "periodic_eval", data_error)
    train(cfg(tmp_path / "a"), progress=False)
    assert "periodic evaluation at step 1 failed" in capsys.readouterr().out

    def bug(*a, **k):
        raise RuntimeError("Expected all tensors to be on the same device, but found cuda:0 and cpu")

    monkeypatch.setattr(evaluate, "periodic_eval", bug)
    with pytest.raises(RuntimeError, match="same device"):
        train(cfg(tmp_path / "b"), progress=False)


def test_text_latent_sampling_and_editing_stay_on_the_model_device(tmp_path):
    """A Stable-Diffusion folder's U-Net (text layout "sd") with prompt CFG, and img2img/inpainting through its
    autoencoder, on `meta`: the text embeddings (cached on the CPU) and the latent mask follow the input."""
    from noisecraft.editing.inpaint import inpaint
    from noisecraft.editing.sdedit import img2img
    from noisecraft.interop.stable_diffusion import load_stable_diffusion
    from noisecraft.models.autoencoder import VAECodec
    from noisecraft.sampling.prompt_guidance import prompt_denoiser
    from tiny_models import make_tiny_sd

    folder = make_tiny_sd(tmp_path / "sd")
    den, sched, shape, enc = load_stable_diffusion(folder, "cpu")
    den = den.to(META)
    from diffusers import AutoencoderKL

    codec = VAECodec(AutoencoderKL.from_pretrained(folder / "vae")).to(META)
    guided, text = prompt_denoiser(den, enc, ["a red bag"] * 2, "a blue coat", 3.0)
    assert all(v.device.type == "cpu" for v in text.values())  # as the sample command gets them
    y = generate(guided, sched, shape, [0, 1], sampler="dpmpp_2m", steps=2, to_cpu=False, cond=text)
    assert y.device == META and y.shape == (2, *shape)
    sig = step_sigmas(sched, 3)
    x = torch.zeros(2, 3, 16, 16, device=META)
    cond = {k: v.to(META) for k, v in text.items()}
    mask = torch.zeros(1, 16, 16)
    with torch.no_grad():
        assert img2img(guided, x, sig, 0.5, cond=cond, generator=gens(2), codec=codec).device == META
        for method in ("replace", "repaint"):
            kw = dict(method=method, jump_length=2, resample=2, cond=cond, generator=gens(2), codec=codec)
            assert inpaint(guided, x, mask, sig, **kw).device == META
