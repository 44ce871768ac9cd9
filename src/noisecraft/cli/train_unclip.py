"""Train an unCLIP run (Ramesh et al. 2022) on captioned images with a trained CLIP: a diffusion prior from the
CLIP text embedding to the CLIP image embedding, and a decoder from the image embedding (plus the text
embedding) to the image, both trained with conditioning dropout so CFG works on either. See docs/unclip.md.
Both run on the trainers' shared loop (training.core.fit): OUT/config.json records the command line before
anything slow, checkpoints are crash-safe, --resume continues a killed run bit for bit, and --minutes is a time
budget for the whole run, split between the prior and the decoder in the ratio of their --*-steps.

Examples:
  noisecraft train-unclip --clip runs/clip-scenes --data scenes --latent runs/vae-scenes --out runs/unclip
  noisecraft train-unclip --out runs/unclip --resume        # after Ctrl-C, a crash or kill -9
  noisecraft sample runs/unclip --prompt "a red bag on the left" --num 8 --cfg 3
  noisecraft edit variations runs/unclip scene.png --num 4
"""

from __future__ import annotations

import argparse

from noisecraft.cli import run_record
from noisecraft.cli.args import add_device_argument, non_negative_int, positive_float, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip", default=None, help="a CLIP folder (noisecraft train-clip, or a transformers CLIP)")
    p.add_argument("--data", default=None, help="captioned data: scenes, a folder with captions, hf:...")
    p.add_argument("--out", required=True, help="the unCLIP run folder")
    p.add_argument("--latent", default=None, help="autoencoder folder: the decoder works on its latents")
    p.add_argument("--size", type=positive_int, default=10000, help="number of scenes (scenes only)")
    p.add_argument("--prior-steps", type=positive_int, default=3000, help="optimiser steps of the prior")
    p.add_argument("--decoder-steps", type=positive_int, default=1500, help="optimiser steps of the decoder")
    p.add_argument("--batch-size", type=positive_int, default=32, help="decoder batch (the prior uses 8×)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate of both")
    p.add_argument("--preset", default="tiny", help="decoder cond-unet preset (tiny, small)")
    p.add_argument("--widths", default=None, help="decoder channels per level, e.g. 32,32 (default: the preset's)")
    p.add_argument(
        "--schedule", default=None, help="decoder noise schedule: edm (default, as `noisecraft train`), linear, ..."
    )
    p.add_argument(
        "--parameterisation",
        default=None,
        help="decoder parameterisation: edm (default, as `noisecraft train`), eps, x0, v; the guide's: eps with "
        "--schedule linear",
    )
    p.add_argument("--seed", type=non_negative_int, default=0)
    run_record.add_run_arguments(
        p, checkpoint_every=250, minutes_help="time budget of both parts instead of their --*-steps"
    )
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:

    if not args.resume:
        _check(args)
        if args.minutes is not None:  # each part's share of the budget, recorded with the command line
            share = args.prior_steps / (args.prior_steps + args.decoder_steps)
            args.prior_minutes, args.decoder_minutes = args.minutes * share, args.minutes * (1 - share)
    args = run_record.start(args, "unclip")  # OUT/config.json before anything slow; --resume reads it back
    _check(args)
    _decoder_defaults(args)
    from noisecraft.training.interrupt import TrainingInterrupted

    try:
        return _train(args)
    except TrainingInterrupted as e:
        return run_record.stopped(e, args.out, "train-unclip")


def _check(args: argparse.Namespace) -> None:
    from pathlib import Path

    from noisecraft.errors import NoisecraftError

    if args.clip is None or args.data is None:
        raise NoisecraftError("pass --clip FOLDER (a trained CLIP) and --data SOURCE (captioned images, e.g. scenes)")
    if (Path(args.out) / "unclip.json").is_file() and not args.resume:
        raise NoisecraftError(
            f"{args.out} already holds an unCLIP run: pass --resume to continue, or choose a new --out"
        )


def _decoder_defaults(args: argparse.Namespace) -> None:
    """Fill the decoder's --schedule/--parameterisation left unset: `noisecraft train`'s defaults (EDM
    preconditioning and noise levels, Karras et al. 2022) for a new run, whose record then says them; a resumed
    run keeps what it was trained with (its record, else its unclip.json: a run of the ε/linear days stays so)."""
    import json
    from pathlib import Path

    from noisecraft.training.config import TRAIN_MODEL_DEFAULTS
    from noisecraft.training.run_folder import write_text_atomic

    keys = ("schedule", "parameterisation")
    if all(getattr(args, k, None) is not None for k in keys):
        return
    saved = Path(args.out) / "unclip.json"
    decoder = json.loads(saved.read_text()).get("decoder", {}) if args.resume and saved.is_file() else {}
    for k in keys:
        if getattr(args, k, None) is None:
            setattr(args, k, decoder.get(k, TRAIN_MODEL_DEFAULTS[k]))
    if not args.resume:  # the record (written before the torch import above) names the settings chosen
        write_text_atomic(Path(args.out) / "config.json", json.dumps(run_record.record_of(args, "unclip"), indent=2))


def _train(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from noisecraft.training import unclip as U
    from noisecraft.training.run_folder import write_text_atomic

    out = Path(args.out)
    with run_record.removed_if_refused(args):  # refused before training (bad data, a CLIP that does not load)
        x, img, text_emb, cfg, ref, clip = _prepare(args, out)
    progress = not args.no_progress

    def planned(part: str):
        def record(steps: int) -> dict:  # a --minutes part planned into `steps`: the records say so
            setattr(args, f"{part}_steps", steps)
            setattr(args, f"{part}_minutes", None)
            if getattr(args, "prior_minutes", None) is None and getattr(args, "decoder_minutes", None) is None:
                args.minutes = None
            write_text_atomic(out / "config.json", json.dumps(run_record.record_of(args, "unclip"), indent=2))
            getattr(cfg, f"{part}_loop").update(steps=steps, minutes=None)
            write_text_atomic(out / U.CONFIG_NAME, json.dumps({**cfg.to_dict(), "_clip": ref}, indent=2))
            return {"unclip": cfg.to_dict(), "part": part}

        return record

    print(f"prior: {args.prior_steps} steps over {clip.embed_dim}-d CLIP embeddings")
    U.train_prior(cfg, img, text_emb, out / "prior", args.resume, progress, planned("prior"))
    print(f"decoder: {args.decoder_steps} steps on {'latents' if args.latent else 'pixels'} {tuple(x.shape[1:])}")
    U.train_decoder(cfg, x, img, text_emb, out / "decoder", args.resume, progress, planned("decoder"))
    print(f"wrote the unCLIP run {out} (sample it: noisecraft sample {out} --prompt '...')")
    return 0


def _prepare(args: argparse.Namespace, out):
    """(decoder data, image embeddings, caption embeddings per item, the UnclipConfig, the CLIP reference, the
    CLIP) of the run `args` describe, on its device; unclip.json and the CLIP copy written."""
    import dataclasses
    import json
    from pathlib import Path

    import torch

    from noisecraft.data.config import DataConfig
    from noisecraft.errors import NoisecraftError
    from noisecraft.models.clip import load_clip
    from noisecraft.models.factory import ModelConfig
    from noisecraft.sampling.generate import resolve_device
    from noisecraft.training import unclip as U
    from noisecraft.training.clip_train import load_captioned
    from noisecraft.training.core import LoopSettings
    from noisecraft.training.defaults import latent_model
    from noisecraft.training.run_folder import write_text_atomic

    device = resolve_device(args.device)
    clip = load_clip(args.clip, device)
    shape = clip.config.shape if hasattr(clip, "config") else (3, 32, 32)
    data = DataConfig(source=args.data, resolution=shape[-1], channels=shape[0], captions=True, scenes_size=args.size,
                      seed=args.seed)  # fmt: skip
    images, captions = load_captioned(data)
    print(f"embedding {len(images)} images and their captions with the CLIP")
    with torch.no_grad():
        img = torch.cat([clip.image_embeds(images[i : i + 256].to(device)).cpu() for i in range(0, len(images), 256)])
        flat = sorted({c for cs in captions for c in cs})
        txt = torch.cat([clip.text_embeds(flat[i : i + 256]).cpu() for i in range(0, len(flat), 256)])
    row = {c: i for i, c in enumerate(flat)}
    text_emb = [txt[[row[c] for c in cs]] for cs in captions]  # item i → (K_i, E)
    x = images
    if args.latent is not None:
        from noisecraft.models.autoencoder import load_codec

        codec = load_codec(args.latent, device)
        x = torch.cat([codec.encode(images[i : i + 256].to(device)).cpu() for i in range(0, len(images), 256)])
    net_kwargs = {}
    if args.widths:
        try:
            net_kwargs["block_out_channels"] = [int(v) for v in args.widths.split(",")]
        except ValueError:
            raise NoisecraftError(f"--widths must be channels per level like 32,64, got {args.widths!r}") from None
    decoder = ModelConfig(
        arch="cond-unet", preset=args.preset, resolution=x.shape[-1], channels=x.shape[1], text_dim=clip.embed_dim,
        schedule=args.schedule, parameterisation=args.parameterisation, net_kwargs=net_kwargs,
    )  # fmt: skip
    saved = U.read_config(out) if (out / U.CONFIG_NAME).is_file() else None
    if saved is not None and args.resume:  # a rule added since the run was saved must not change its decoder
        d = saved.decoder
        decoder = dataclasses.replace(
            decoder, sigma_data=d.get("sigma_data"), schedule_kwargs=d.get("schedule_kwargs") or {}
        )
    elif args.latent is not None:  # `noisecraft train`'s rule for unit-variance latents: σ_data 1, shifted density
        decoder = latent_model(decoder)
    common = dict(lr=args.lr, checkpoint_every=args.checkpoint_every, seed=args.seed)
    pm, dm = getattr(args, "prior_minutes", None), getattr(args, "decoder_minutes", None)
    every = [max(1, min(50, n // 10)) for n in (args.prior_steps, args.decoder_steps)]  # >= 10 log records
    prior_loop = LoopSettings(
        steps=args.prior_steps, batch=8 * args.batch_size, minutes=pm, log_every=every[0], **common
    )
    decoder_loop = LoopSettings(
        steps=args.decoder_steps, batch=args.batch_size, minutes=dm, log_every=every[1], **common
    )
    cfg = U.UnclipConfig(
        embed_dim=clip.embed_dim,
        image_shape=tuple(images.shape[1:]),
        latent=None if args.latent is None else str(Path(args.latent).resolve()),
        decoder=decoder.to_dict(),
        prior_loop=vars(prior_loop),
        decoder_loop=vars(decoder_loop),
        data=data.to_dict(),
    )
    if saved is not None:
        saved = saved.to_dict()
        fixed = [k for k in cfg.to_dict() if k not in ("prior_loop", "decoder_loop") and saved[k] != cfg.to_dict()[k]]
        if fixed:
            raise NoisecraftError(f"cannot resume {out}: {', '.join(fixed)} changed; use the run's own options")
    out.mkdir(parents=True, exist_ok=True)
    ref = U.copy_clip(args.clip, out)
    write_text_atomic(out / U.CONFIG_NAME, json.dumps({**cfg.to_dict(), "_clip": ref}, indent=2))
    return x.to(device), img.to(device), [t.to(device) for t in text_emb], cfg, ref, clip
