"""Guidance scale vs class accuracy and diversity, for classifier-free and classifier guidance.

For one class-conditional run (trained with label dropout, so its null label is the unconditional model):
- CFG: D_u + w·(D_c − D_u) at each scale w (w = 0 unconditional, w = 1 conditional);
- classifier guidance (Dhariwal & Nichol 2021) of the UNCONDITIONAL model with a noisy classifier trained by
  ``noisecraft.models.classifier`` at each scale s (s = 0 is again the unconditional model).

Every sample is judged by an INDEPENDENT classifier trained only on clean real images (evaluation.features'
built-in CNN, never the guidance classifier): class accuracy = share of samples it assigns to the requested
class. Diversity within each class is measured in its 128-d feature space two ways: the Fréchet distance to
the real images of that class (lower is better; it grows when guidance collapses the class) and the spread,
mean pairwise feature distance of the samples divided by that of the real class images (1 = as diverse as the
data). The "real" row scores held-out real images the same way (the floor for FD, the reference for spread).

Run (trains what it needs unless given; writes table.md, results.json, curves.png and examples.png, whose rows
are CFG at scales 0, 1, 3 then classifier guidance at 0, 1, 3, two samples per class, into --out):
  python benchmarks/guidance.py --dataset digits --out benchmarks/results/guidance-digits
  python benchmarks/guidance.py --dataset fashion-mnist --resolution 16 --out benchmarks/results/guidance-fashion
  python benchmarks/guidance.py --run runs/digits-cond --classifier runs/clf-digits --scales 0,1,2,4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor

# The model the benchmark trains when --run is not given: a class-conditional MLP denoiser on flattened images
# (cheap on a CPU), EDM preconditioning and schedule, label dropout 0.15 for the unconditional model.
TRAIN_DEFAULTS = dict(steps=8000, batch=256, lr=1e-3, preset="small", label_dropout=0.15)


def train_model(dataset: str, resolution: int, out: Path, steps: int, preset: str) -> Path:
    from noisecraft.data.config import DataConfig
    from noisecraft.models.factory import ModelConfig
    from noisecraft.training.config import OptimConfig, TrainConfig
    from noisecraft.training.loop import train

    cfg = TrainConfig(
        data=DataConfig(source=dataset, resolution=resolution, channels=1, labels=True),
        model=ModelConfig(
            arch="mlp",
            preset=preset,
            resolution=resolution,
            channels=1,
            num_classes=10,
            parameterisation="edm",
            schedule="edm",
        ),
        optim=OptimConfig(lr=TRAIN_DEFAULTS["lr"]),
        label_dropout=TRAIN_DEFAULTS["label_dropout"],
        steps=steps,
        batch_size=TRAIN_DEFAULTS["batch"],
        sample_every=0,
        checkpoint_every=max(1, steps // 4),
        trackers=[],
        out_dir=str(out),
    )
    train(cfg, progress=False)
    return out


def train_guidance_classifier(run_cfg, out: Path, steps: int) -> Path:
    import dataclasses

    from noisecraft.models.classifier import ClassifierConfig, ClassifierTraining, load_labelled, train_classifier

    data = dataclasses.replace(run_cfg.data, labels=True, flip=False)
    images, labels, names = load_labelled(data)
    cfg = ClassifierConfig(
        resolution=data.resolution, channels=data.channels, num_classes=run_cfg.model.num_classes,
        schedule=run_cfg.model.schedule, schedule_kwargs=dict(run_cfg.model.schedule_kwargs),
        sigma_data=run_cfg.model.resolved_sigma_data, width=32, class_names=names,
    )  # fmt: skip
    model = train_classifier(images, labels, cfg, ClassifierTraining(steps=steps, batch=128), progress=False)
    return model.save(out)


def pairwise_spread(f: Tensor) -> float:
    """Mean Euclidean distance between distinct rows of f (N, d)."""
    d = torch.cdist(f, f)
    n = f.shape[0]
    return float(d.sum() / (n * (n - 1)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    p.add_argument("--resolution", type=int, default=None, help="training resolution (default: 8 digits, 16 fashion)")
    p.add_argument("--run", default=None, help="an existing class-conditional run (else one is trained)")
    p.add_argument("--classifier", default=None, help="an existing noisy classifier (else one is trained)")
    p.add_argument("--train-steps", type=int, default=TRAIN_DEFAULTS["steps"])
    p.add_argument("--preset", default=TRAIN_DEFAULTS["preset"], help="MLP preset of the trained model")
    p.add_argument("--classifier-steps", type=int, default=2000)
    p.add_argument("--scales", default="0,0.5,1,2,3,5,8")
    p.add_argument("--num", type=int, default=100, help="samples per class and scale")
    p.add_argument("--sampler", default="euler")
    p.add_argument("--steps", type=int, default=32, help="sampling steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from noisecraft.data.io import save_grid
    from noisecraft.evaluation.features import BuiltinFeatures, _resize
    from noisecraft.evaluation.metrics import frechet_distance
    from noisecraft.evaluation.reference import reference_images
    from noisecraft.models.classifier import load_classifier
    from noisecraft.sampling.generate import generate
    from noisecraft.sampling.guidance import CFGDenoiser, ClassConditioned, ClassifierGuidedDenoiser
    from noisecraft.training.checkpoint import load_run
    from noisecraft.training.setup import sample_shape

    res = args.resolution or (8 if args.dataset == "digits" else 16)
    out = Path(args.out or f"benchmarks/results/guidance-{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    run = Path(args.run) if args.run else out / "run"
    if args.run is None and not (run / "checkpoints").exists():
        print(
            f"training a class-conditional {args.preset} MLP on {args.dataset} {res}x{res} ({args.train_steps} steps)"
        )
        train_model(args.dataset, res, run, args.train_steps, args.preset)
    denoiser, schedule, cfg = load_run(run)
    shape, K = sample_shape(cfg), cfg.model.num_classes
    clf_dir = Path(args.classifier) if args.classifier else out / "classifier"
    if args.classifier is None and not (clf_dir / "classifier.json").exists():
        print(f"training the noisy guidance classifier ({args.classifier_steps} steps)")
        train_guidance_classifier(cfg, clf_dir, args.classifier_steps)
    classifier = load_classifier(clf_dir)
    t_train = time.time() - t0

    judge = BuiltinFeatures(args.dataset)  # clean real images only; independent of the guidance classifier
    real_x, real_y = reference_images(args.dataset, "train")
    held_x, held_y = reference_images(args.dataset, "test")

    def view(x: Tensor) -> Tensor:
        """Images at the model's resolution (real ones are resized to it too), then at the judge's."""
        x = x.reshape(x.shape[0], *shape) if x.ndim == 2 else x
        return _resize(_resize(x.float().clamp(-1, 1), shape[-1]), judge.resolution)

    real_f = judge(view(real_x))

    def score(x: Tensor, label: int) -> dict[str, float]:
        with torch.no_grad():
            img = view(x)
            acc = float((judge.net(img).argmax(-1) == label).float().mean())
        f = judge(img)
        ref = real_f[real_y == label]
        return {"acc": acc, "fd": frechet_distance(ref, f), "spread": pairwise_spread(f) / pairwise_spread(ref)}

    real_rows = [score(held_x[held_y == k][: args.num], k) for k in range(K)]  # as many as generated, if it can
    results = {"real (held-out)": {"-": {m: sum(r[m] for r in real_rows) / K for m in ("acc", "fd", "spread")}}}
    scales = [float(s) for s in args.scales.split(",")]
    seeds = list(range(args.num))
    examples = []
    for method in ("cfg", "classifier"):
        results[method] = {}
        for s in scales:
            rows = []
            for k in range(K):
                if method == "cfg":
                    guided = ClassConditioned(CFGDenoiser(denoiser, s, null_label=K), k)
                else:  # the model gets no label: the MLP/UNet then use their null label (unconditional)
                    guided = ClassConditioned(ClassifierGuidedDenoiser(denoiser, classifier, s), k)
                x = generate(guided, schedule, shape, seeds, sampler=args.sampler, steps=args.steps,
                             class_labels=torch.full((args.num,), k), batch_size=500)  # fmt: skip
                rows.append(score(x, k))
                if s in (0.0, 1.0, 3.0):  # one row per (method, scale), two samples per class
                    examples.append(x[:2])
            results[method][s] = {m: sum(r[m] for r in rows) / K for m in ("acc", "fd", "spread")}
            r = results[method][s]
            print(
                f"{method:10s} scale {s:4g}: accuracy {r['acc']:.3f}  in-class FD {r['fd']:8.2f}  "
                f"spread {r['spread']:.3f}"
            )
    t_total = time.time() - t0

    lines = [
        f"# Guidance on {args.dataset} ({res}x{res}, {cfg.model.arch} {cfg.model.preset}, {args.sampler} "
        f"{args.steps} steps, {args.num} samples per class and scale)",
        "",
        f"Judge: {judge.name} (checksum {judge.checksum}, clean test accuracy {judge.test_accuracy}).",
        "Scale 0 is the unconditional model for both methods (same seeds), so its accuracy is 1/K by construction.",
        f"In-class FD is to the real training-split images of the class; the real row scores up to {args.num} "
        "held-out images per class (FD is biased upwards when a class has fewer). Real images are resized to the "
        "model's resolution and back before judging, like the samples.",
        "",
        "| method | scale | class accuracy | in-class FD (↓) | spread / real |",
        "|---|---|---|---|---|",
    ]
    for method, by_scale in results.items():
        for s, r in by_scale.items():
            lines.append(f"| {method} | {s} | {r['acc']:.3f} | {r['fd']:.2f} | {r['spread']:.3f} |")
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    meta = {"dataset": args.dataset, "resolution": res, "run": str(run), "classifier": str(clf_dir),
            "judge": judge.describe(), "sampler": args.sampler, "steps": args.steps, "num_per_class": args.num,
            "train_seconds": t_train, "total_seconds": t_total,
            "results": {m: {str(s): r for s, r in v.items()} for m, v in results.items()}}  # fmt: skip
    (out / "results.json").write_text(json.dumps(meta, indent=2))
    plot(results, out / "curves.png", args.dataset)
    save_grid(torch.cat(examples).reshape(-1, *shape), out / "examples.png", nrow=2 * K)
    print(f"wrote {out / 'table.md'}, results.json, curves.png, examples.png in {t_total:.0f} s")


def plot(results: dict, path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    real = results["real (held-out)"]["-"]
    for ax, key, title in zip(axes, ("acc", "fd", "spread"), ("class accuracy", "in-class FD (↓)", "spread / real")):
        for method, label in (("cfg", "classifier-free (w)"), ("classifier", "classifier guidance (s)")):
            xs = list(results[method])
            ax.plot(xs, [results[method][s][key] for s in xs], "o-", label=label)
        ax.axhline(real[key], color="gray", ls="--", lw=1, label="real held-out")
        ax.set_xlabel("guidance scale")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Guidance scale on {dataset}: accuracy rises, diversity falls")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
