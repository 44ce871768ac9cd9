"""Shared by the studio's tests: tiny trained runs (class-conditional + classifier; text-to-image) and a studio
server on a free port."""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from noisecraft.cli.main import main


def train_tiny_runs(root: Path) -> tuple[Path, Path]:
    """runs/tiny: 3 steps of the class-conditional MLP on 8x8 digits (with a sample grid); a 3-step classifier."""
    run, clf = root / "runs" / "tiny", root / "runs" / "clf-tiny"
    args = ["train", "--data", "digits", "--arch", "mlp", "--resolution", "8", "--steps", "3", "--batch-size", "16",
            "--schedule", "edm", "--set", "model.num_classes=10", "--set", "data.labels=true",
            "--set", "label_dropout=0.2", "--set", "sample_every=3", "--set", "trackers=[]",
            "--out", str(run), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert main(["train-classifier", "--run", str(run), "--steps", "3", "--width", "4", "--out", str(clf),
                 "--no-progress"]) == 0  # fmt: skip
    return run, clf


def train_tiny_text_run(root: Path) -> Path:
    """runs/scenes-text: a latent text-to-image run in seconds (a 3-step VAE of 16x16 scenes, 2 steps of a text
    UNet on its 4x8x8 latents, a tiny CLIP text encoder of 16 tokens). Needs the fake_fashion_mnist fixture and
    $NOISECRAFT_CACHE set by the caller."""
    from tiny_models import make_tiny_clip

    vae, run = root / "vae", root / "runs" / "scenes-text"
    argv = ["train-vae", "--steps", "3", "--batch-size", "4", "--set", "data.scenes_size=16", "--out", str(vae)]
    assert main([*argv, "--no-progress"]) == 0
    clip = make_tiny_clip(root / "clip")
    argv = ["train", "--data", "scenes", "--text", f"clip:{clip}", "--latent", str(vae), "--steps", "2",
            "--batch-size", "4", "--no-progress", "--set", "trackers=[]", "--set", "ema.decay=0.99",
            "--set", 'model.net_kwargs={"block_out_channels": [32, 32]}', "--set", "data.scenes_size=16",
            "--set", "sample_every=0", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    return run


class Server:
    """A studio serving `runs_dir` on 127.0.0.1 at a free port, in a background thread."""

    def __init__(self, runs_dir: Path):
        from noisecraft.web.server import make_server
        from noisecraft.web.studio import Studio

        self.studio = Studio(runs_dir, "cpu")
        self.httpd = make_server(self.studio, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def call(self, method: str, path: str, body: object = None, raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, method=method, data=data)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait(self, job: int) -> dict:
        import time

        while True:
            _, j = self.call("GET", f"/api/job?id={job}")
            if j["status"] in ("done", "error", "cancelled"):
                return j
            time.sleep(0.02)

    def run_job(self, path: str, body: dict) -> dict:
        code, j = self.call("POST", path, body)
        assert code == 200, j
        out = self.wait(j["job"])
        assert out["status"] == "done", out
        return out["result"]


def png_url(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def url_pixels(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
