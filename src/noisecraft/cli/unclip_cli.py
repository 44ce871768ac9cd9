"""The CLI glue of CLIP, CLIP guidance and unCLIP runs: `sample` on an unCLIP run, `edit variations`,
`eval --clip`, and the CLIP-guidance wrapper `sample --clip-guide` puts around any text run (docs/unclip.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_clip_guidance_arguments(p: argparse.ArgumentParser) -> None:
    """The sample options of CLIP guidance and unCLIP (a small group, added by cli/sample.py)."""
    from noisecraft.cli.args import positive_int

    g = p.add_argument_group("CLIP guidance and unCLIP runs (see docs/unclip.md)")
    g.add_argument("--clip-guide", default=None, metavar="CLIP", help="steer sampling with this CLIP's gradient")
    g.add_argument("--clip-scale", type=float, default=1.0, help="CLIP guidance scale s (0: none)")
    g.add_argument("--clip-interval", default=None, help="CLIP guidance only for σ in (lo, hi], e.g. 0.5,80")
    g.add_argument("--clip-through", default="x0", help="x0 (through the denoised estimate) or noisy (noise-aware)")
    g.add_argument("--prior-cfg", type=float, default=None, help="unCLIP: CFG scale of the prior")
    g.add_argument("--prior-steps", type=positive_int, default=None, help="unCLIP: sampler steps of the prior")


def clip_guided(denoiser, clip, scale: float, interval, through: str, latent: str | None, shape, device):
    """Wrap `denoiser` (pixels, or latents of the autoencoder `latent`) in CLIP guidance with `clip`."""
    from noisecraft.errors import NoisecraftError
    from noisecraft.sampling.clip_guidance import ClipGuidedDenoiser

    decode = None
    if latent is not None:
        from noisecraft.models.autoencoder import load_codec

        codec = load_codec(latent, device)
        vae, s, shift = codec.vae, codec.scaling_factor, codec.shift

        def decode(z):  # differentiable: the gradient reaches the latent
            return vae.decode(z / s + shift).sample

    elif len(shape) != 3:
        raise NoisecraftError("CLIP guidance needs an image model")
    else:
        clip.check_input_shape(tuple(shape))
    return ClipGuidedDenoiser(denoiser, clip, scale, None, interval, through, decode)


# What `sample` on an unCLIP run reads (cli/sample.py's options); any other option given is refused in one line.
UNCLIP_SAMPLE_OPTIONS = frozenset(
    "run sampler steps schedule num seed prompt prompts negative_prompt cfg_scale cfg_interval cfg_rescale batch_size "
    "raw clip_x0 upscale aug clip_guide clip_scale clip_interval clip_through prior_cfg prior_steps device out".split()
)


def check_unclip_options(args: argparse.Namespace) -> None:
    """One line naming the `sample` options given (not at their defaults) that an unCLIP run has no use for."""
    from noisecraft.cli.sample import add_arguments
    from noisecraft.errors import NoisecraftError

    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    flag = {a.dest: a.option_strings[-1] for a in p._actions if a.option_strings}
    defaults = vars(p.parse_args([args.run]))
    given = [flag[k] for k, v in defaults.items() if k not in UNCLIP_SAMPLE_OPTIONS and getattr(args, k, v) != v]
    if given:
        raise NoisecraftError(
            f"{args.run} is an unCLIP run, which does not take {', '.join(given)}; it takes --prompt/--prompts, "
            "--negative-prompt, --cfg (decoder), --cfg-interval, --cfg-rescale, --prior-cfg, --prior-steps, "
            "--clip-guide and --upscale"
        )


def sample_unclip(args: argparse.Namespace, prompts: list[str] | None, out: Path) -> int:
    """`noisecraft sample UNCLIP_RUN --prompt ...`: prior → decoder (→ --upscale stages), PNGs + grid + prompts.txt.

    --schedule (step spacing), --batch-size and --negative-prompt act on both stages; --cfg, --cfg-interval,
    --cfg-rescale, --clip-x0 and --clip-guide on the decoder; options it has no use for are refused."""
    from noisecraft.cli.args import write_guard
    from noisecraft.cli.sample import _cascade, _stages
    from noisecraft.data.io import save_grid, save_images
    from noisecraft.errors import NoisecraftError
    from noisecraft.sampling.clip_guidance import clip_text_cond
    from noisecraft.sampling.generate import clip_pixels, resolve_device
    from noisecraft.sampling.unclip import sample_prompts
    from noisecraft.training.unclip import load_unclip

    if prompts is None:
        raise NoisecraftError(f"{args.run} is an unCLIP run: pass --prompt TEXT (or --prompts FILE)")
    check_unclip_options(args)
    device = resolve_device(args.device)
    un = load_unclip(args.run, device, ema=not args.raw)
    shape = un.config.image_shape
    clip_pixels(un.decoder, args.clip_x0, un.config.latent, shape)  # refused for a latent decoder before sampling
    stages = _stages(args, shape, device)  # checked to chain from the decoder's images before any sampling
    seeds = list(range(args.seed, args.seed + args.num))
    per = [prompts[i % len(prompts)] for i in range(args.num)]
    gcond, gclip = None, None
    if args.clip_guide is not None and args.clip_scale > 0:
        from noisecraft.models.clip import load_clip

        gclip = load_clip(args.clip_guide, device)
        gcond = clip_text_cond(gclip, per, device)

    def guide(d):  # outside CFG: CLIP guidance, then the x̂0 clamp (as on other runs)
        if gclip is not None:
            d = clip_guided(d, gclip, args.clip_scale, args.clip_interval, args.clip_through, un.config.latent, shape,
                            device)  # fmt: skip
        return clip_pixels(d, args.clip_x0, un.config.latent, shape)

    x = sample_prompts(un, per, seeds, prior_cfg=args.prior_cfg, decoder_cfg=args.cfg_scale, sampler=args.sampler,
                       steps=args.steps, prior_steps=args.prior_steps, guide=guide, guide_cond=gcond,
                       negative_prompt=args.negative_prompt, cfg_interval=args.cfg_interval,
                       cfg_rescale=args.cfg_rescale, spacing=args.schedule, batch_size=args.batch_size)  # fmt: skip
    x = _cascade(x, stages, args, seeds)
    with write_guard(out):
        out.mkdir(parents=True, exist_ok=True)
        save_images(x, out, seeds)
        (out / "prompts.txt").write_text("".join(f"seed{s:06d}.png\t{p}\n" for s, p in zip(seeds, per)))
        grid = save_grid(x, out / "grid.png")
    chain = " → ".join(["prior", "decoder"] + ["upsampler"] * len(stages))
    print(f"wrote {args.num} images seed{seeds[0]:06d}.png .. seed{seeds[-1]:06d}.png and {grid} ({chain})")
    return 0


def add_variations_parser(sub) -> None:
    p = sub.add_parser(
        "variations",
        help="unCLIP image variations: encode the image with CLIP, decode new images sharing its content",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from noisecraft.cli.args import add_device_argument, non_negative_int, positive_int

    p.add_argument("run", help="an unCLIP run folder (noisecraft train-unclip)")
    p.add_argument("image", help="input image, any size and mode")
    p.add_argument("--num", type=positive_int, default=4, help="number of variations")
    p.add_argument("--sampler", default="euler", help="sampler name")
    p.add_argument("--steps", type=positive_int, default=30, help="decoder sampler steps")
    p.add_argument("--cfg", type=float, default=None, help="decoder CFG scale over the image embedding")
    p.add_argument("--clip", default=None, help="encode with this CLIP instead of the run's (same width only)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="variation i uses seed+i")
    p.add_argument("--raw", action="store_true", help="use the raw training weights instead of the EMA")
    add_device_argument(p)
    p.add_argument("--out", default=None, help="output folder (default: RUN/edits/variations)")


def variations_cmd(args: argparse.Namespace) -> int:
    import torch

    from noisecraft.cli.args import output_dir, write_guard
    from noisecraft.data.io import save_grid, save_images
    from noisecraft.editing.io import load_image
    from noisecraft.errors import NoisecraftError
    from noisecraft.sampling.generate import resolve_device
    from noisecraft.sampling.unclip import variations
    from noisecraft.training.unclip import is_unclip_run, load_unclip

    if not is_unclip_run(args.run):
        raise NoisecraftError(f"{args.run!r} is not an unCLIP run (noisecraft train-unclip writes unclip.json)")
    out = output_dir(args.out or Path(args.run) / "edits" / "variations")
    device = resolve_device(args.device)
    un = load_unclip(args.run, device, clip=args.clip, ema=not args.raw)
    c, h, _ = un.config.image_shape
    x, msg = load_image(args.image, h, c)
    print(msg)
    seeds = list(range(args.seed, args.seed + args.num))
    y = variations(un, x[None], seeds, cfg_scale=args.cfg, sampler=args.sampler, steps=args.steps)
    with write_guard(out):
        out.mkdir(parents=True, exist_ok=True)
        save_images(y, out, seeds)
        grid = save_grid(torch.cat([x[None].cpu(), y]), out / "comparison.png", nrow=args.num + 1)
    print(f"wrote {args.num} variations of {args.image} in {out} and {grid} (input first)")
    return 0


def clip_eval(args: argparse.Namespace) -> int:
    """`noisecraft eval RUN --clip CLIP`: CLIP score of generated images against their prompts, and the CLIP's
    held-out retrieval (scenes test split, text → image top-1 among 100). --samples-dir: score a folder written by
    `noisecraft sample` (its prompts.txt names each image's prompt)."""
    import json

    from noisecraft.cli.args import output_file, write_guard
    from noisecraft.errors import NoisecraftError
    from noisecraft.models.clip import clip_score, load_clip, retrieval_top1
    from noisecraft.sampling.generate import resolve_device

    device = resolve_device(args.device)
    out = Path(args.out) if args.out else None
    if out is not None:
        output_file(out, (".json",))
    clip = load_clip(args.clip, device)
    res: dict = {"clip": str(args.clip)}
    held = _scenes_pairs(args.retrieval, clip)
    if held is not None:
        res["retrieval_top1_of_100"] = retrieval_top1(clip, *held)
        res["retrieval_pairs"] = len(held[0]) // 100 * 100
        print(f"CLIP retrieval on held-out scenes, text → image top-1 among 100: {res['retrieval_top1_of_100']:.3f}")
    if args.samples_dir:
        images, prompts = _folder_with_prompts(Path(args.samples_dir), _clip_shape(clip))
        source = str(args.samples_dir)
    elif args.run_dir:
        if not args.prompts:
            raise NoisecraftError("eval --clip of a run needs --prompts FILE (one prompt per line)")
        prompts = [ln.strip() for ln in Path(args.prompts).read_text().splitlines() if ln.strip()]
        prompts = [prompts[i % len(prompts)] for i in range(args.num)]
        images = _generate(args, prompts, device)
        source = str(args.run_dir)
    else:
        raise NoisecraftError("give a RUN_DIR (with --prompts) or --samples-dir to score")
    clip.check_input_shape(tuple(images.shape[1:]))
    s = clip_score(clip, images, prompts)
    res.update({"source": source, "num": len(s), "clip_score_mean": float(s.mean()),
                "clip_score_sem": float(s.std() / max(len(s), 1) ** 0.5)})  # fmt: skip
    mean, sem = res["clip_score_mean"], res["clip_score_sem"]
    print(f"CLIP score of {len(s)} images against their prompts: {mean:.2f} ± {sem:.2f}")
    out = out or (Path(args.samples_dir or args.run_dir) / "eval" / "clip.json")
    with write_guard(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


def _scenes_pairs(num: int, clip):
    """(images, first captions) of `num` held-out scenes (test split) at the CLIP's image size; None if num is 0."""
    if not num:
        return None
    from noisecraft.data.config import DataConfig
    from noisecraft.training.clip_train import load_captioned

    shape = _clip_shape(clip)
    x, caps = load_captioned(DataConfig(source="scenes", channels=shape[0], resolution=shape[-1], split="test",
                                        scenes_size=num, captions=True))  # fmt: skip
    return x, [c[0] for c in caps]


def _clip_shape(clip) -> tuple[int, int, int]:
    """The (C, H, W) a small CLIP was trained on; (3, 32, 32) (the scenes) for a transformers CLIP."""
    return tuple(getattr(getattr(clip, "config", None), "shape", (3, 32, 32)))


def _folder_with_prompts(folder: Path, shape):
    import torch

    from noisecraft.editing.io import load_image
    from noisecraft.errors import NoisecraftError

    table = folder / "prompts.txt"
    if not table.is_file():
        raise NoisecraftError(f"{folder} has no prompts.txt (written by `noisecraft sample --prompt`)")
    rows = [ln.split("\t", 1) for ln in table.read_text().splitlines() if "\t" in ln]
    images = [load_image(folder / name, shape[-1], shape[0])[0] for name, _ in rows]
    return torch.stack(images), [p for _, p in rows]


def _generate(args, prompts: list[str], device):
    from noisecraft.sampling.generate import decode_latents, generate
    from noisecraft.training.unclip import is_unclip_run

    seeds = list(range(args.seed, args.seed + len(prompts)))
    if is_unclip_run(args.run_dir):
        from noisecraft.sampling.unclip import sample_prompts
        from noisecraft.training.unclip import load_unclip

        un = load_unclip(args.run_dir, device)
        return sample_prompts(un, prompts, seeds, decoder_cfg=args.cfg_scale, sampler=args.sampler, steps=args.steps)
    from noisecraft.interop.pretrained import load_pretrained
    from noisecraft.sampling.prompt_guidance import run_prompt_denoiser

    model = load_pretrained(args.run_dir, device=device)
    d, cond = run_prompt_denoiser(model, prompts, len(prompts), "", args.cfg_scale, name=args.run_dir)
    x = generate(d, model.schedule, model.shape, seeds, sampler=args.sampler, steps=args.steps, cond=cond)
    return decode_latents(model.latent, x, device).cpu()
