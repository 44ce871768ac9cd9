"""The studio's actions: generate, compare, edit and learn, each a thin call of the library functions that the
CLI calls (sampling.generate.generate, sampling.guidance.build_guided_denoiser,
sampling.prompt_guidance.run_prompt_denoiser and sampling.generate.decode_latents for text and latent runs, the
editing functions, the guide's plots). Requests are checked here, before they queue; the work runs as a job of
the model's queue.
"""

from __future__ import annotations

import shlex
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from noisecraft.errors import NoisecraftError
from noisecraft.web.images import grid_url, image_urls, load_mask_upload, load_upload, strip_url
from noisecraft.web.jobs import Job, JobQueue
from noisecraft.web.params import Params

PREVIEW_EVERY_S = 0.1  # at most ten x̂0 previews a second
TRAJECTORY_FRAMES = 8
MAX_BATCH = 64
MAX_STEPS = 1000
MAX_CELLS = 64
EDIT_MODES = ("img2img", "inpaint", "invert", "interpolate", "swap")
AXES = ("sampler", "steps", "schedule", "cfg", "seed", "class")


def _q(v: object) -> str:
    return shlex.quote(str(v))


class Studio:
    """State of one `noisecraft ui` server: the runs folder, the device, loaded models and the job queue."""

    def __init__(self, runs_dir: str | Path = "runs", device: str | None = None):
        self.runs_dir = Path(runs_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.jobs = JobQueue()
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._plot_lock = threading.Lock()  # pyplot is not thread-safe; the learn plots run in request threads

    # -- models --------------------------------------------------------------------------------------------
    def model(self, run: str, ema: bool = True):
        """load_pretrained(run) on the studio's device, cached (the job queue loads each model in its own worker)."""
        from noisecraft.interop.pretrained import load_pretrained

        key = f"{run}|{ema}"
        with self._lock:
            m = self._models.get(key)
        if m is None:
            m = load_pretrained(run, ema=ema, device=self.device)
            m.denoiser = m.denoiser.to(self.device)
            with self._lock:
                self._models[key] = m
        return m

    def info(self) -> dict[str, Any]:
        from noisecraft.sampling.samplers import SAMPLER_INFO
        from noisecraft.sampling.steps import STEP_SCHEDULES

        return {
            "samplers": SAMPLER_INFO,
            "schedules": {k: v for k, v in STEP_SCHEDULES.items() if not k.startswith("optimised")},
            "device": self.device,
            "runs_dir": str(self.runs_dir),
            "edit_modes": list(EDIT_MODES),
            "axes": list(AXES),
        }

    def runs(self, extra: str | None = None) -> dict[str, Any]:
        from noisecraft.web.runs import describe, list_runs

        runs, classifiers = list_runs(self.runs_dir)
        if extra:
            runs.insert(0, describe(extra))
        return {"runs": runs, "classifiers": classifiers}

    def _submit(self, run: str, ema: bool, fn) -> dict[str, Any]:
        job = self.jobs.submit(f"{run}|{ema}", fn)
        return {"job": job.id}

    # -- generate ------------------------------------------------------------------------------------------
    def _sampling(self, p: Params) -> dict[str, Any]:
        from noisecraft.sampling.samplers import SAMPLERS
        from noisecraft.sampling.steps import STEP_SCHEDULES

        run = p.str("run")
        if not run:
            raise NoisecraftError("choose a run first (or type the path of a run or diffusers folder)")
        if not Path(run).exists():
            raise NoisecraftError(f"{run!r} does not exist: give a run folder or a diffusers folder")
        spacing = p.str("schedule")
        if spacing is not None and spacing not in STEP_SCHEDULES and not spacing.startswith("optimised:"):
            raise NoisecraftError(f"unknown step schedule {spacing!r}; choose one of: {', '.join(STEP_SCHEDULES)}")
        return dict(
            run=run,
            ema=not p.bool("raw"),
            sampler=p.choice("sampler", "unipc", SAMPLERS),
            steps=p.int("steps", 40, 1, MAX_STEPS),
            schedule=spacing,
            seed=p.seed(),
        )

    @staticmethod
    def _run_kind(run: str) -> dict[str, Any]:
        """The run list's entry for `run` (config only, no weights): its text encoder and latent autoencoder."""
        from noisecraft.web.runs import describe

        try:
            return describe(run)
        except (NoisecraftError, OSError, ValueError):
            return {}  # not a run this list can read: loading it will say what is wrong

    def _guidance(self, p: Params, run: str) -> dict[str, Any]:
        clf = p.str("classifier")
        if clf is not None and not Path(clf).exists():
            raise NoisecraftError(f"classifier folder {clf!r} does not exist")
        g = dict(
            class_label=p.int("class", None, 0, 100_000),
            cfg_scale=p.float("cfg", None, -100, 100),
            cfg_interval=p.interval("cfg_interval"),
            cfg_rescale=p.float("cfg_rescale", 0.0, 0.0, 1.0),
            classifier=clf,
            classifier_scale=p.float("classifier_scale", 1.0, -100, 100),
            clip_x0=p.float("clip_x0", None, 1e-6, 1e6),  # `sample --clip-x0 R`: each x̂0 clamped to [-R, R]
            prompt=p.text("prompt"),
            negative_prompt=p.text("negative_prompt") or "",
        )
        if self._run_kind(run).get("text"):
            if g["prompt"] is None:
                raise NoisecraftError("this run is text-conditioned: type a prompt")
            if g["class_label"] is not None or clf is not None:
                raise NoisecraftError("a text run takes a prompt, not a class or a classifier: clear those fields")
            if g["negative_prompt"] and g["cfg_scale"] is None:
                raise NoisecraftError("a negative prompt acts through guidance: give a CFG scale too")
        elif g["prompt"] is not None or g["negative_prompt"]:
            raise NoisecraftError("this run is not text-conditioned (not trained with --text): clear the prompt boxes")
        return g

    def _conditioned(self, m, s: dict[str, Any], g: dict[str, Any], num: int):
        """(denoiser, class labels (num,) or None, per-sample cond or None, prompt warnings) that `noisecraft sample`
        uses for these settings: a prompt through run_prompt_denoiser, else class labels and guidance."""
        from noisecraft.sampling.prompt_guidance import run_prompt_denoiser

        prompts = None if g["prompt"] is None else [g["prompt"]]
        other = g["class_label"] is not None or g["classifier"] is not None
        text = run_prompt_denoiser(
            m, prompts, num, g["negative_prompt"], g["cfg_scale"], g["cfg_interval"], g["cfg_rescale"], other, s["run"]
        )
        from noisecraft.sampling.generate import auto_clip_range, clip_pixels

        clip = g.get("clip_x0")  # none given: `sample`'s default (an ε-prediction pixel model is clamped to [-1, 1])
        clip = auto_clip_range(m.denoiser, m.latent, m.shape) if clip is None else clip
        if text is not None:  # the prompts the CLI encodes: the prompt, and the negative one under guidance
            negative = g["negative_prompt"] if g["cfg_scale"] is not None else ""
            said = [g["prompt"]] + ([negative] if negative else [])
            den = clip_pixels(text[0], clip, m.latent, m.shape)
            return den, None, text[1], m.text_encoder.truncation_warnings(said)
        den, label = self._guided(m, g)
        labels = None if label is None else torch.full((num,), label, dtype=torch.long)
        return clip_pixels(den, clip, m.latent, m.shape), labels, None, []

    def _guided(self, m, g: dict[str, Any]):
        """The denoiser `noisecraft sample` runs for these guidance settings, and its class labels tensor or None."""
        if g["class_label"] is None and g["cfg_scale"] is None and g["classifier"] is None:
            return m.denoiser, None
        from noisecraft.sampling.guidance import build_guided_denoiser

        classifier = None
        if g["classifier"] is not None:
            from noisecraft.models.classifier import load_classifier

            classifier = load_classifier(g["classifier"], device=self.device)
        den = build_guided_denoiser(
            m.denoiser,
            class_label=g["class_label"],
            cfg_scale=g["cfg_scale"],
            cfg_interval=g["cfg_interval"],
            cfg_rescale=g["cfg_rescale"],
            classifier=classifier,
            classifier_scale=g["classifier_scale"],
            num_classes=m.num_classes,
            sample_shape=m.shape,
        )
        return den, g["class_label"]

    @staticmethod
    def sample_command(s: dict[str, Any], g: dict[str, Any], num: int) -> str:
        """The `noisecraft sample` command line that draws the same pixels."""
        cmd = ["noisecraft", "sample", _q(s["run"]), "--sampler", s["sampler"], "--steps", str(s["steps"])]
        if s["schedule"]:
            cmd += ["--schedule", _q(s["schedule"])]
        cmd += ["--num", str(num), "--seed", str(s["seed"])]
        if g.get("prompt") is not None:
            cmd += ["--prompt", _q(g["prompt"])]
        if g.get("negative_prompt"):
            cmd += ["--negative-prompt", _q(g["negative_prompt"])]
        if g["class_label"] is not None:
            cmd += ["--class", str(g["class_label"])]
        if g["cfg_scale"] is not None:
            cmd += ["--cfg", f"{g['cfg_scale']:g}"]
        if g["cfg_interval"]:
            cmd += ["--cfg-interval", g["cfg_interval"]]
        if g["cfg_rescale"]:
            cmd += ["--cfg-rescale", f"{g['cfg_rescale']:g}"]
        if g["classifier"]:
            cmd += ["--classifier", _q(g["classifier"]), "--classifier-scale", f"{g['classifier_scale']:g}"]
        if g.get("clip_x0") is not None:
            cmd += ["--clip-x0", f"{g['clip_x0']:g}"]
        if not s["ema"]:
            cmd.append("--raw")
        return " ".join(cmd)

    def generate(self, data: Any) -> dict[str, Any]:
        p = Params(data)
        s = self._sampling(p)
        g = self._guidance(p, s["run"])
        num = p.int("num", 4, 1, MAX_BATCH)
        batch = p.int("batch_size", MAX_BATCH, 1, MAX_BATCH)

        def fn(job: Job) -> dict[str, Any]:
            return self._generate(job, s, g, num, batch)

        return self._submit(s["run"], s["ema"], fn)

    def _generate(self, job: Job, s: dict, g: dict, num: int, batch: int) -> dict[str, Any]:
        from noisecraft.sampling.generate import decode_latents, generate
        from noisecraft.sampling.run_knobs import run_sampler_knobs
        from noisecraft.sampling.steps import step_sigmas

        m = self.model(s["run"], s["ema"])
        den, labels, cond, warnings = self._conditioned(m, s, g, num)
        n_steps = len(step_sigmas(m.schedule, s["steps"], s["schedule"])) - 1
        total = n_steps * -(-num // batch)
        frames: list[torch.Tensor] = []
        last = [0.0]
        image = len(m.shape) == 3

        def callback(lo: int, st) -> None:
            if lo == 0:
                frames.append(st.x0_hat[0].detach().float().cpu())
            done = (lo // batch) * n_steps + st.i + 1
            now = time.monotonic()
            preview = None
            if image and (now - last[0] >= PREVIEW_EVERY_S or done == total):
                last[0] = now
                preview = grid_url(decode_latents(m.latent, st.x0_hat, self.device))
            job.step(min(done, total), total, preview)

        t0 = time.perf_counter()
        x = generate(
            den,
            m.schedule,
            m.shape,
            list(range(s["seed"], s["seed"] + num)),
            sampler=s["sampler"],
            steps=s["steps"],
            spacing=s["schedule"],
            class_labels=labels,
            batch_size=batch,
            device=self.device,
            callback=callback,
            cond=cond,
            knobs=run_sampler_knobs(s["sampler"], s["run"], s["steps"]),  # run-given knobs, as `sample`
        )
        x = decode_latents(m.latent, x, self.device)  # a latent run: pixels, as `noisecraft sample` writes them
        seconds = time.perf_counter() - t0
        out: dict[str, Any] = {"seeds": [s["seed"], s["seed"] + num - 1], "command": self.sample_command(s, g, num)}
        out["seconds"] = round(seconds, 3)
        if warnings:
            out["message"] = "; ".join(warnings)
        if not image:
            out["grid"] = self._points(x, f"{num} samples, {s['sampler']}, {s['steps']} steps")
            out["images"] = []
            return out
        pick = torch.linspace(0, len(frames) - 1, min(TRAJECTORY_FRAMES, len(frames))).round().long().unique()
        traj = decode_latents(m.latent, torch.stack([frames[i] for i in pick.tolist()]), self.device)
        out.update(images=image_urls(x), grid=grid_url(x), trajectory=strip_url(list(traj)))
        return out

    def _points(self, x: torch.Tensor, title: str) -> str:
        from noisecraft.evaluation.plots import save_points
        from noisecraft.web.images import file_url

        with self._plot_lock, tempfile.TemporaryDirectory(prefix="noisecraft-ui-") as d:
            return file_url(save_points(x, Path(d) / "points.png", title))

    # -- compare: an X/Y grid ------------------------------------------------------------------------------
    def compare(self, data: Any) -> dict[str, Any]:
        p = Params(data)
        s = self._sampling(p)
        g = self._guidance(p, s["run"])
        axes = []
        for a in ("x", "y"):
            name = p.choice(f"{a}_axis", None, AXES)
            raw = p.str(f"{a}_values", "")
            if name is None:
                axes.append((None, [None]))
                continue
            values = [v.strip() for v in raw.split(",") if v.strip()]
            if not values:
                raise NoisecraftError(f"give comma-separated values for the {a} axis ({name})")
            for v in values:  # check each value as the field it replaces
                self._cell(s, g, name, v)
            axes.append((name, values))
        (xn, xv), (yn, yv) = axes
        if len(xv) * len(yv) > MAX_CELLS:
            raise NoisecraftError(f"the grid has {len(xv) * len(yv)} cells; at most {MAX_CELLS}")

        def fn(job: Job) -> dict[str, Any]:
            from noisecraft.sampling.generate import decode_latents, generate
            from noisecraft.sampling.run_knobs import run_sampler_knobs

            m = self.model(s["run"], s["ema"])
            if len(m.shape) != 3:
                raise NoisecraftError("the X/Y grid needs an image model; this run draws 2-D points")
            rows, total = [], len(xv) * len(yv)
            for i, yval in enumerate(yv):
                row = []
                for j, xval in enumerate(xv):
                    cs, cg = self._cell(s, g, yn, yval) if yn else (s, g)
                    cs, cg = self._cell(cs, cg, xn, xval) if xn else (cs, cg)
                    den, labels, cond, _ = self._conditioned(m, cs, cg, 1)
                    x = generate(den, m.schedule, m.shape, [cs["seed"]], sampler=cs["sampler"], steps=cs["steps"],
                                 spacing=cs["schedule"], class_labels=labels, device=self.device, cond=cond,
                                 knobs=run_sampler_knobs(cs["sampler"], cs["run"], cs["steps"]),
                                 callback=lambda lo, st: job.step(job.done, total))  # fmt: skip
                    x = decode_latents(m.latent, x, self.device)
                    row.append(grid_url(x))
                    job.step(i * len(xv) + j + 1, total, row[-1])
                rows.append(row)
            return {"x_axis": xn, "x_values": xv, "y_axis": yn, "y_values": yv, "cells": rows}

        return self._submit(s["run"], s["ema"], fn)

    def _cell(self, s: dict, g: dict, name: str, value: str) -> tuple[dict, dict]:
        """Copies of the sampling and guidance settings with one field replaced by an axis value (checked)."""
        s, g = dict(s), dict(g)
        one = Params({name: value})
        if name == "sampler":
            from noisecraft.sampling.samplers import SAMPLERS

            s["sampler"] = one.choice("sampler", None, SAMPLERS)
        elif name == "steps":
            s["steps"] = one.int("steps", None, 1, MAX_STEPS)
        elif name == "schedule":
            s["schedule"] = self._sampling(Params({"run": s["run"], "schedule": value}))["schedule"]
        elif name == "seed":
            s["seed"] = one.int("seed", None, 0, 2**63 - 1)
        elif name == "cfg":
            g["cfg_scale"] = one.float("cfg", None, -100, 100)
        elif name == "class":
            if g.get("prompt") is not None:
                raise NoisecraftError("a text run has no classes: choose another axis than class")
            g["class_label"] = one.int("class", None, 0, 100_000)
        return s, g

    # -- edit ------------------------------------------------------------------------------------------------
    def prepare(self, data: Any) -> dict[str, Any]:
        """An upload converted to a run's input (resolution, channels): what the editors will see, at model size."""
        p = Params(data)
        res, ch = self._image_geometry(p)
        x, msg = load_upload(p.data.get("image"), res, ch, p.str("name", "upload") or "upload")
        return {"image": image_urls(x[None])[0], "message": msg, "resolution": res, "channels": ch}

    def _image_geometry(self, p: Params) -> tuple[int, int]:
        run = p.str("run")
        if run:
            from noisecraft.web.runs import describe

            d = describe(run)
            if d["size"] == "2-D points":
                raise NoisecraftError("editing works on image models; this run draws 2-D points")
            res, _, ch = d["size"].split("x")
            return int(res), int(ch)
        return p.int("resolution", 64, 4, 1024), p.int("channels", 3, 1, 3)

    def edit(self, data: Any) -> dict[str, Any]:
        from noisecraft.editing.sdedit import check_strength

        p = Params(data)
        s = self._sampling(p)
        kind = self._run_kind(s["run"])
        if kind.get("text") or kind.get("latent"):
            what = "text-to-image" if kind.get("text") else "latent"
            raise NoisecraftError(f"editing a {what} run is not supported in the studio yet: use the Generate tab")
        mode = p.choice("mode", "img2img", EDIT_MODES)
        res, ch = self._image_geometry(p)
        x, msg = load_upload(p.data.get("image"), res, ch, "image")
        o = dict(mode=mode, message=msg, num=p.int("num", 1, 1, 16), label=p.int("class", None, 0, 100_000))
        o["guidance"] = p.float("guidance", 1.0, -100, 100)
        if mode in ("img2img", "swap"):
            o["strength"] = check_strength(p.float("strength", 0.6 if mode == "img2img" else 1.0, 0, 1))
        if mode == "inpaint":
            o["method"] = p.choice("method", "replace", ("replace", "repaint"))
            o["jump"], o["resample"] = p.int("jump", 10, 1, 100), p.int("resample", 10, 1, 100)
            rect = o["rect"] = p.str("rect")
            if rect:
                from noisecraft.editing.io import rect_mask

                o["mask"] = rect_mask(rect, res)
            else:
                o["mask"] = load_mask_upload(p.data.get("mask"), res)
            if not o["mask"].any():
                raise NoisecraftError("the mask is empty: paint the region to fill (or give a rectangle)")
        if mode in ("invert", "interpolate", "swap"):
            o["iters"] = p.int("iters", 3, 0, 50)
        if mode == "interpolate":
            o["image_b"], _ = load_upload(p.data.get("image_b"), res, ch, "second image")
            o["frames"] = p.int("frames", 7, 2, 32)
        if mode == "swap":
            o["source"], o["target"] = p.int("source", None, 0, 100_000), p.int("target", None, 0, 100_000)
            if o["source"] is None or o["target"] is None:
                raise NoisecraftError("class swap needs a source class and a target class")

        def fn(job: Job) -> dict[str, Any]:
            return self._edit(job, s, o, x)

        return self._submit(s["run"], s["ema"], fn)

    def _edit(self, job: Job, s: dict, o: dict, x: torch.Tensor) -> dict[str, Any]:
        from noisecraft.editing import edits, sdedit
        from noisecraft.editing.inpaint import inpaint
        from noisecraft.sampling import inversion
        from noisecraft.sampling.noise import per_sample_generators
        from noisecraft.sampling.steps import step_sigmas

        m = self.model(s["run"], s["ema"])
        k = m.num_classes
        for name in ("label", "source", "target"):
            v = o.get(name)
            if v is not None and not k:
                raise NoisecraftError(f"a {name} class needs a class-conditional model; this one has no classes")
            if v is not None and v >= k:
                raise NoisecraftError(f"the {name} class must lie in 0..{k - 1}, got {v}")
        sigmas = step_sigmas(m.schedule, s["steps"], s["schedule"])  # a CPU list of floats, whatever the device
        x = x[None].to(self.device)  # (1, C, H, W)
        mode, n, den = o["mode"], o["num"], m.denoiser
        if o["guidance"] != 1.0 and mode in ("img2img", "inpaint"):
            if o["label"] is None:
                raise NoisecraftError("a guidance other than 1 needs a class to guide towards")
            from noisecraft.sampling.guidance import CFGDenoiser

            den = CFGDenoiser(den, o["guidance"], null_label=k)
        total = max(1, len(sigmas) - 1)

        def cond(label: int | None, b: int) -> dict:
            return {} if label is None else {"class_labels": torch.full((b,), label, device=self.device)}

        def cb(st) -> None:
            job.step(min(st.i + 1, total), total, grid_url(st.x0_hat))

        gens = per_sample_generators(range(s["seed"], s["seed"] + n))
        res: dict[str, Any] = {
            "message": f"{mode}: {s['sampler']}, {len(sigmas) - 1} steps, seed {s['seed']}",
            "input_message": o["message"],
        }
        if mode == "img2img":
            y = sdedit.img2img(den, x.expand(n, -1, -1, -1), sigmas, o["strength"], sampler=s["sampler"],
                               cond=cond(o["label"], n), generator=gens, callback=cb)  # fmt: skip
        elif mode == "inpaint":
            mask = o["mask"].to(self.device)
            y = inpaint(den, x.expand(n, -1, -1, -1), mask, sigmas, method=o["method"], sampler=s["sampler"],
                                jump_length=o["jump"], resample=o["resample"], cond=cond(o["label"], n),
                                generator=gens, callback=cb)  # fmt: skip
            res["kept"] = image_urls(x * (1 - mask))[0]
        elif mode == "invert":
            c = cond(o["label"], 1)
            z = inversion.invert(den, x, sigmas, sampler=s["sampler"], iters=o["iters"], cond=c, callback=cb)
            y = inversion.regenerate(den, z, sigmas, sampler=s["sampler"], cond=c, callback=cb)
            res["psnr"] = round(float(edits.psnr(y, x)[0]), 2)
            res["noise"] = image_urls((z / float(sigmas[0])).clamp(-2, 2) / 2)[0]
            res["message"] += f", {o['iters']} fixed-point iters: round trip PSNR {res['psnr']:.2f} dB"
        elif mode == "interpolate":
            ts = torch.linspace(0, 1, o["frames"]).tolist()
            y = edits.interpolate(den, x, o["image_b"][None].to(self.device), sigmas, ts, sampler=s["sampler"],
                                  iters=o["iters"])[:, 0]  # fmt: skip
        else:
            y = edits.swap_class(den, x, sigmas, o["source"], o["target"], guidance=o["guidance"], null_label=k,
                                 strength=o["strength"], sampler=s["sampler"], iters=o["iters"])  # fmt: skip
        job.step(total, total)
        res.update(images=image_urls(y), grid=grid_url(torch.cat([x, y]), nrow=len(y) + 1), input=image_urls(x)[0])
        res["command"] = self.edit_command(s, o)
        return res

    @staticmethod
    def edit_command(s: dict[str, Any], o: dict[str, Any]) -> str:
        """The `noisecraft edit` command that gives the same pixels from input.png (the converted upload, which the
        page offers for download), input_b.png and mask.png."""
        mode = o["mode"]
        cmd = ["noisecraft", "edit", mode, _q(s["run"]), "input.png"] + (
            ["input_b.png"] if mode == "interpolate" else []
        )
        cmd += ["--sampler", s["sampler"], "--steps", str(s["steps"])]
        cmd += ["--schedule", _q(s["schedule"])] if s["schedule"] else []
        cmd += ["--seed", str(s["seed"])] + (["--raw"] if not s["ema"] else [])
        if mode in ("img2img", "swap"):
            cmd += ["--strength", f"{o['strength']:g}"]
        if mode in ("img2img", "inpaint"):
            cmd += ["--num", str(o["num"])]
        if mode in ("img2img", "inpaint", "invert") and o["label"] is not None:
            cmd += ["--class", str(o["label"])]
        if mode in ("img2img", "inpaint") and o["guidance"] != 1.0:
            cmd += ["--guidance", f"{o['guidance']:g}"]
        if mode == "inpaint":
            cmd += ["--rect", _q(o["rect"])] if o.get("rect") else ["--mask", "mask.png"]
            cmd += ["--method", o["method"]]
            cmd += ["--jump", str(o["jump"]), "--resample", str(o["resample"])] if o["method"] == "repaint" else []
        if mode == "interpolate":
            cmd += ["--frames", str(o["frames"])]
        if mode == "swap":
            cmd += ["--source", str(o["source"]), "--target", str(o["target"]), "--guidance", f"{o['guidance']:g}"]
        if mode in ("invert", "interpolate", "swap"):
            cmd += ["--iters", str(o["iters"])]
        return " ".join(cmd)

    # -- learn ----------------------------------------------------------------------------------------------
    def forward_strip(self, data: Any) -> dict[str, Any]:
        """x_σ = x0 + σ·ε for an upload at the chosen σ's, shown at VP scale x_σ/√(1+σ²) (one ε for all)."""
        p = Params(data)
        raw = p.str("sigmas", "0,0.1,0.3,1,3,10,80") or ""
        try:
            sig = [float(v) for v in raw.split(",") if v.strip()]
        except ValueError:
            raise NoisecraftError(f"σ values must be comma-separated numbers, got {raw!r}") from None
        if not sig or len(sig) > 16 or any(not 0 <= v <= 1e4 for v in sig):
            raise NoisecraftError("give 1 to 16 σ values in [0, 10000], e.g. 0,0.5,2,10")
        res, ch = p.int("resolution", 64, 4, 512), p.int("channels", 3, 1, 3)
        if ch not in (1, 3):
            raise NoisecraftError("channels must be 1 or 3")
        x, msg = load_upload(p.data.get("image"), res, ch, "image")
        eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(p.seed()))
        frames = [(x + v * eps) / (1 + v * v) ** 0.5 for v in sig]
        return {"strip": strip_url(frames), "sigmas": sig, "message": msg}

    def schedules_plot(self) -> dict[str, Any]:
        from noisecraft.evaluation.plots import plot_schedules
        from noisecraft.web.images import file_url

        with self._plot_lock, tempfile.TemporaryDirectory(prefix="noisecraft-ui-") as d:
            return {"plot": file_url(plot_schedules(Path(d) / "schedules.png"))}

    def score_field(self, data: Any) -> dict[str, Any]:
        """The exact score of a 2-D Gaussian mixture at the chosen σ (data.toys; plots.plot_score_field)."""
        from noisecraft.data.toys import eight_gaussians_mixture, gmm_mixture
        from noisecraft.evaluation.plots import plot_score_field
        from noisecraft.web.images import file_url

        p = Params(data)
        toy = p.choice("toy", "8gaussians", ("8gaussians", "gmm"))
        sigma = p.float("sigma", 0.3, 0.01, 50)
        gm = eight_gaussians_mixture() if toy == "8gaussians" else gmm_mixture()
        pts, _ = gm.sample(1000, torch.Generator().manual_seed(0))
        lim = float(pts.abs().max()) * 1.3
        with self._plot_lock, tempfile.TemporaryDirectory(prefix="noisecraft-ui-") as d:
            path = plot_score_field(lambda q: gm.score(q, sigma), Path(d) / "score.png", lim=lim, data=pts,
                                    title=f"exact score of {toy} at σ={sigma:g}")  # fmt: skip
            return {"plot": file_url(path)}
