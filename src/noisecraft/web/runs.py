"""What the studio's run list shows: each run's data, image size, conditioning (classes, text), model size,
training steps and sample grid.

Reads only JSON and file names (no weights), so listing a folder of many runs stays fast.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from noisecraft.errors import NoisecraftError

GRID_MAX_BYTES = 2_000_000  # larger sample grids are not inlined into the page


def _data_url(path: Path | None) -> str | None:
    if path is None or not path.is_file() or path.stat().st_size > GRID_MAX_BYTES:
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _mb(path: Path) -> float | None:
    return round(path.stat().st_size / 1e6, 2) if path.is_file() else None


def describe(path: str | Path) -> dict[str, Any]:
    """One entry of the run list for a run folder, a checkpoint folder or a diffusers pipeline folder."""
    from noisecraft.interop.pretrained import is_diffusers_folder

    path = Path(path)
    if not path.exists():
        raise NoisecraftError(f"{str(path)!r} does not exist: give a run folder or a diffusers folder")
    if is_diffusers_folder(path):
        unet = path / "unet" / "config.json"
        c = json.loads(unet.read_text()) if unet.is_file() else {}
        side = c.get("sample_size", "?")
        side = side[0] if isinstance(side, list) else side
        weights = next(iter(sorted((path / "unet").glob("*.safetensors"))), path / "none")
        return {
            "path": str(path),
            "name": path.name,
            "kind": "diffusers",
            "data": "diffusers pipeline",
            "size": f"{side}x{side}x{c.get('in_channels', '?')}",
            "classes": int(c.get("num_class_embeds") or 0),
            "text": None,
            "latent": None,
            "steps": None,
            "weights_mb": _mb(weights),
            "grid": _data_url(path / "generated" / "grid.png"),
        }
    from noisecraft.training.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(path)
    cfg = json.loads((ckpt / "config.json").read_text())
    if "trainer" in cfg:  # a train-classifier / train-vae run folder (cli/run_record.py): not a diffusion model
        raise NoisecraftError(f"{str(path)!r} is a {cfg['trainer']} training run, not a diffusion model")
    data, model = cfg.get("data", {}), cfg.get("model", {})
    state = ckpt / "state.json"
    step = json.loads(state.read_text()).get("step") if state.is_file() else None
    if step is None and ckpt.name.startswith("step-"):
        step = int(ckpt.name[5:])
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt
    grids = sorted((run / "samples").glob("step-*.png"))
    grid = run / "generated" / "grid.png"
    toy = str(data.get("source", "")).startswith("toy:")
    encoder = cfg.get("text", {}).get("encoder", "none")
    return {
        "path": str(path),
        "name": run.name,
        "kind": "run",
        "data": data.get("source", "?"),
        "size": "2-D points" if toy else f"{data.get('resolution')}x{data.get('resolution')}x{data.get('channels')}",
        "arch": model.get("arch"),
        "classes": int(model.get("num_classes") or 0),
        "text": None if encoder == "none" else encoder,  # the text encoder of a text-to-image run
        "latent": data.get("latent"),  # the autoencoder folder of a latent run
        "steps": step,
        "weights_mb": _mb(ckpt / "ema.safetensors"),
        "grid": _data_url(grid if grid.is_file() else (grids[-1] if grids else None)),
    }


def list_runs(root: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(runs, classifier folders) directly under `root` (and one level below), sorted by name."""
    root = Path(root)
    runs: list[dict[str, Any]] = []
    classifiers: list[str] = []
    if not root.is_dir():
        return runs, classifiers
    candidates = [p for p in sorted(root.iterdir()) if p.is_dir()]
    candidates += [q for p in candidates for q in sorted(p.iterdir()) if q.is_dir() and q.name != "checkpoints"]
    for p in candidates:
        if (p / "classifier.json").is_file():
            classifiers.append(str(p))
        elif (p / "checkpoints").is_dir() or (p / "model_index.json").is_file() or (p / "unet").is_dir():
            try:
                runs.append(describe(p))
            except (NoisecraftError, OSError, ValueError):
                continue  # a run still writing its first checkpoint, or a broken folder: not listed
    return runs, classifiers
