"""`noisecraft edit imagic`: text-driven edit of one real image with Imagic (editing/imagic.py).

  noisecraft edit imagic runs/scenes-text photo.png --prompt "a blue sneaker on the left" --etas 0,0.4,0.7,1
  noisecraft edit imagic runs/scenes-text photo.png --prompt "..." --save edits/sneaker    # keep e_opt + delta
  noisecraft edit imagic runs/scenes-text photo.png --load edits/sneaker --eta 0.9         # sampling only
  noisecraft edit imagic sd-folder/ photo.png --prompt "a red bag on the left" --etas 0,0.7,1   # Stable Diffusion

Writes imagic_eta<η>.png per η and comparison.png (the input, then one column per η). The run folder (or the
Stable-Diffusion folder: unet/ vae/ text_encoder/ tokenizer/ scheduler/, loaded as `noisecraft sample SD_FOLDER`
loads it) is only read: the fine-tuning changes a copy of the model in memory.
"""

from __future__ import annotations

import argparse

from noisecraft.cli.args import add_device_argument, non_negative_int, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser(
        "imagic",
        help="Imagic: edit one image by a text prompt (optimise the embedding, fine-tune a copy, interpolate)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="a text-conditioned run folder (trained with --text), or a Stable-Diffusion folder")
    p.add_argument("image", help="the image to edit, any size and mode (converted to the run's)")
    p.add_argument("--prompt", default=None, help="the target text: what the edited image should show")
    p.add_argument("--eta", type=float, default=None, help="one interpolation weight η (0 = input, 1 = prompt)")
    p.add_argument("--etas", default=None, help="comma-separated η list (default 0,0.4,0.6,0.8,1,1.2)")
    p.add_argument("--embed-steps", type=non_negative_int, default=100, help="step 1: embedding optimisation steps")
    p.add_argument("--finetune-steps", type=non_negative_int, default=100, help="step 2: fine-tuning steps")
    p.add_argument("--embed-lr", type=float, default=1e-3, help="step 1 learning rate")
    p.add_argument("--lr", type=float, default=1e-4, help="step 2 (fine-tuning) learning rate")
    p.add_argument("--batch", type=positive_int, default=16, help="noise draws of the image per optimiser step")
    p.add_argument("--cfg", type=float, default=5.0, help="CFG scale of step 3 against the empty prompt (1 = none)")
    p.add_argument("--sampler", default="dpmpp_2m", help="sampler of step 3 (see `noisecraft samplers`)")
    p.add_argument("--steps", type=positive_int, default=25, help="sampler steps")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seeds steps 1-2 and the start noise of step 3")
    p.add_argument("--save", default=None, help="folder to keep the optimised embedding and fine-tuned delta in")
    p.add_argument("--load", default=None, help="a folder written by --save: skip steps 1-2, sample only")
    p.add_argument("--raw", action="store_true", help="use the raw training weights instead of the EMA")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device_argument(p)
    p.add_argument("--out", default=None, help="output folder (default: RUN/edits/imagic)")


def _etas(args) -> list[float]:
    from noisecraft.errors import NoisecraftError

    if args.eta is not None and args.etas is not None:
        raise NoisecraftError("give --eta or --etas, not both")
    if args.eta is not None:
        return [args.eta]
    text = args.etas if args.etas is not None else "0,0.4,0.6,0.8,1,1.2"
    try:
        etas = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise NoisecraftError(f"--etas must be comma-separated numbers such as 0,0.5,1; got {text!r}") from None
    if not etas:
        raise NoisecraftError("--etas is empty: give numbers such as 0,0.5,1")
    return etas


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from noisecraft.cli.args import output_dir, write_guard
    from noisecraft.cli.edit import load_model
    from noisecraft.errors import NoisecraftError

    if args.load is None and (args.prompt is None or not args.prompt.strip()):
        raise NoisecraftError("imagic needs a non-empty --prompt describing the edited image")
    etas = _etas(args)
    if not Path(args.run).exists():
        raise NoisecraftError(f"run folder {args.run!r} does not exist")
    run_dir = Path(args.run)
    cfg_file = run_dir / "config.json"
    if cfg_file.is_file() and json.loads(cfg_file.read_text()).get("text", {}).get("encoder", "none") == "none":
        raise NoisecraftError("imagic needs a text-conditioned model (a run trained with --text)")
    out = output_dir(args.out or run_dir / "edits" / "imagic")
    if args.save:
        output_dir(args.save, "--save")

    import torch

    from noisecraft.editing import imagic as im
    from noisecraft.editing.io import load_image, save_comparison, save_image
    from noisecraft.errors import check_choice
    from noisecraft.models.autoencoder import load_codec
    from noisecraft.sampling.generate import resolve_device
    from noisecraft.sampling.samplers import SAMPLERS
    from noisecraft.sampling.steps import step_sigmas

    check_choice("sampler", args.sampler, SAMPLERS)
    settings = im.ImagicSettings(args.embed_steps, args.finetune_steps, args.embed_lr, args.lr, args.batch, args.seed)
    device = resolve_device(args.device)
    denoiser, schedule, cfg = load_model(args.run, not args.raw, device)  # a run or a Stable-Diffusion folder
    im.check_text_model(denoiser)
    x, msg = load_image(args.image, cfg.data.resolution, cfg.data.channels)
    print(msg)
    x = x[None].to(device)  # (1, C, H, W) pixels in [-1, 1]
    codec = load_codec(cfg.data.latent, device)
    z = codec.encode(x)  # (1, c, h, w): the model's data space (pixels for a pixel run; SD: vae/ × its scaling)
    t0 = time.perf_counter()
    if args.load:
        edit = im.ImagicEdit.load(args.load, denoiser)
        if args.prompt and args.prompt != edit.prompt:
            raise NoisecraftError(
                f"--load {args.load!r} holds an edit for the prompt {edit.prompt!r}: omit --prompt or run it anew"
            )
        print(f"loaded the optimised embedding and fine-tuned delta from {args.load}")
    else:
        loss = im.run_loss(cfg, schedule)
        edit = im.imagic(denoiser, loss, z, args.prompt, settings, progress=not args.no_progress)
        r_tgt = im.reconstruction_loss(denoiser, loss, z, edit.e_tgt)
        r_opt = im.reconstruction_loss(denoiser, loss, z, edit.e_opt)
        r_ft = im.reconstruction_loss(edit.tuned, loss, z, edit.e_opt)
        print(
            f"reconstruction loss of the image: target prompt {r_tgt:.4f} → optimised embedding {r_opt:.4f} → "
            f"fine-tuned copy {r_ft:.4f} ({time.perf_counter() - t0:.1f} s)"
        )
        if args.save:
            with write_guard(args.save):
                edit.save(args.save)
            print(f"saved the embeddings and the fine-tuned delta to {args.save} (reuse: --load {args.save})")
    sigmas = step_sigmas(schedule, args.steps, None, sampler=args.sampler)
    cfg_scale = None if args.cfg == 1.0 else args.cfg
    negative = denoiser.net.text_encoder.encode([""], device=device) if cfg_scale is not None else None
    t1 = time.perf_counter()
    y = edit.sample(etas, sigmas, tuple(z.shape[1:]), seed=args.seed, cfg_scale=cfg_scale, negative=negative)
    # decoded one at a time, so an η's pixels do not depend on the batch it was drawn in (--load reproduces them)
    y = torch.cat([codec.decode(y[i : i + 1]) for i in range(len(y))]).clamp(-1, 1)  # (n, C, H, W) pixels
    with write_guard(out):
        out.mkdir(parents=True, exist_ok=True)
        for eta, img in zip(etas, y):
            save_image(img, out / f"imagic_eta{eta:g}.png")
        save_comparison([x[0], *list(y)], out / "comparison.png", ["input"] + [f"η={e:g}" for e in etas])
    print(f"sampled {len(etas)} η in {time.perf_counter() - t1:.1f} s")
    print(f"wrote {len(etas)} edit(s) and {out / 'comparison.png'}  (prompt: {edit.prompt!r})")
    return 0
