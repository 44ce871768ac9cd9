"""The web studio's server without a browser: same pixels as `noisecraft sample`, runs listing, edits, the job
queue (one job at a time per model, cancel), and bad input answered with one line while the server keeps serving."""

from __future__ import annotations

import shlex
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main
from noisecraft.errors import NoisecraftError
from noisecraft.web.jobs import JobQueue
from web_helpers import Server, png_url, train_tiny_runs, train_tiny_text_run, url_pixels


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from types import SimpleNamespace

    root = tmp_path_factory.mktemp("web")
    run, clf = train_tiny_runs(root)
    server = Server(root / "runs")
    yield SimpleNamespace(root=root, run=run, clf=clf, server=server)
    server.close()


def test_generate_callback_reports_every_step_of_every_batch_and_can_stop_sampling():
    from noisecraft.core.oracles import GaussianData
    from noisecraft.core.schedules import make_schedule
    from noisecraft.sampling.generate import generate

    den, sched = GaussianData(torch.zeros(2), 1.0), make_schedule("edm")
    seen = []
    x = generate(den, sched, (2,), [0, 1, 2], steps=4, batch_size=2, callback=lambda lo, st: seen.append((lo, st.i)))
    assert seen == [(0, i) for i in range(4)] + [(2, i) for i in range(4)]
    assert torch.equal(x, generate(den, sched, (2,), [0, 1, 2], steps=4, batch_size=3))  # the hook changes nothing

    def stop(lo, st):
        if st.i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(den, sched, (2,), [0], steps=4, callback=stop)


def test_generate_gives_the_pixels_of_the_command_it_shows(tiny):
    body = {
        "run": str(tiny.run),
        "sampler": "heun",
        "steps": 4,
        "seed": 11,
        "num": 3,
        "batch_size": 2,
        "class": 3,
        "cfg": 2,
        "cfg_interval": "0.1,50",
        "cfg_rescale": 0.5,
        "schedule": "karras",
    }
    res = tiny.server.run_job("/api/generate", body)
    assert res["seeds"] == [11, 13] and len(res["images"]) == 3 and res["trajectory"].startswith("data:image/png")
    argv = shlex.split(res["command"])
    assert argv[:2] == ["noisecraft", "sample"] and "--cfg-rescale" in argv and "karras" in argv
    out = tiny.root / "cli"
    assert main([*argv[1:], "--out", str(out)]) == 0
    for k, url in enumerate(res["images"]):
        cli = np.asarray(Image.open(out / f"seed{11 + k:06d}.png"))
        assert np.array_equal(url_pixels(url), cli)
    other = tiny.server.run_job("/api/generate", {**body, "seed": 12})  # a different seed gives different pixels
    assert not np.array_equal(url_pixels(other["images"][0]), url_pixels(res["images"][0]))
    assert np.array_equal(url_pixels(other["images"][0]), url_pixels(res["images"][1]))  # seed 12 = sample 1


def test_clip_x0_gives_the_pixels_of_the_command_it_shows(tiny):
    body = {"run": str(tiny.run), "sampler": "euler", "steps": 4, "seed": 3, "num": 2, "class": 1, "cfg": 2}
    res = tiny.server.run_job("/api/generate", {**body, "clip_x0": 0.05})
    argv = shlex.split(res["command"])
    assert argv[argv.index("--clip-x0") + 1] == "0.05"
    out = tiny.root / "cli-clip"
    assert main([*argv[1:], "--out", str(out)]) == 0
    plain = tiny.server.run_job("/api/generate", body)
    assert "--clip-x0" not in plain["command"]
    for k, url in enumerate(res["images"]):
        px = url_pixels(url)
        assert np.array_equal(px, np.asarray(Image.open(out / f"seed{3 + k:06d}.png")))
        # euler ends on x̂0 itself: clamped to ±0.05, every pixel lies within 0.05·127.5 of grey; unclamped not
        assert np.abs(px.astype(float) - 127.5).max() <= 7 < np.abs(url_pixels(plain["images"][k]) - 127.5).max()


def test_classifier_guidance_and_random_seed(tiny):
    res = tiny.server.run_job(
        "/api/generate",
        {
            "run": str(tiny.run),
            "steps": 2,
            "num": 1,
            "class": 5,
            "classifier": str(tiny.clf),
            "classifier_scale": 2,
            "seed": "random",
        },
    )
    seed = res["seeds"][0]
    assert f"--seed {seed}" in res["command"] and f"--classifier {tiny.clf}" in res["command"]
    again = tiny.server.run_job(
        "/api/generate",
        {
            "run": str(tiny.run),
            "steps": 2,
            "num": 1,
            "class": 5,
            "classifier": str(tiny.clf),
            "classifier_scale": 2,
            "seed": seed,
        },
    )
    assert np.array_equal(url_pixels(again["images"][0]), url_pixels(res["images"][0]))


def test_runs_are_listed_with_data_size_steps_and_grid(tiny):
    code, d = tiny.server.call("GET", "/api/runs")
    assert code == 200 and d["classifiers"] == [str(tiny.clf)]
    (r,) = d["runs"]
    assert (r["name"], r["data"], r["size"], r["steps"], r["classes"]) == ("tiny", "digits", "8x8x1", 3, 10)
    assert url_pixels(r["grid"]).ndim >= 2 and r["weights_mb"] > 0
    code, d = tiny.server.call("GET", f"/api/runs?extra={tiny.run}/checkpoints/step-00000003")
    assert code == 200 and d["runs"][0]["steps"] == 3 and len(d["runs"]) == 2
    code, info = tiny.server.call("GET", "/api/info")
    from noisecraft.sampling.samplers import SAMPLER_INFO

    assert code == 200 and set(info["samplers"]) == set(SAMPLER_INFO) and info["device"] == "cpu"


def test_edits_keep_what_they_promise(tiny):
    rng = np.random.default_rng(0)
    picture = png_url(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))
    code, prep = tiny.server.call("POST", "/api/prepare", {"run": str(tiny.run), "image": picture})
    assert code == 200 and "30x20" not in prep["message"] and "20x30 RGB -> 8x8 L" in prep["message"]
    x = url_pixels(prep["image"])
    assert x.shape == (8, 8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 1:7] = 255
    res = tiny.server.run_job(
        "/api/edit",
        {"run": str(tiny.run), "mode": "inpaint", "image": prep["image"], "steps": 3, "mask": png_url(mask), "num": 2},
    )
    for url in res["images"]:
        y = url_pixels(url)
        assert np.array_equal(y[mask == 0], x[mask == 0]) and not np.array_equal(y[mask > 0], x[mask > 0])
    res = tiny.server.run_job(
        "/api/edit", {"run": str(tiny.run), "mode": "img2img", "image": prep["image"], "strength": 0}
    )
    assert np.array_equal(url_pixels(res["images"][0]), x)  # strength 0 keeps the input
    res = tiny.server.run_job("/api/edit", {"run": str(tiny.run), "mode": "invert", "image": prep["image"], "steps": 4})
    assert "PSNR" in res["message"] and np.isfinite(res["psnr"])
    res = tiny.server.run_job(
        "/api/edit",
        {
            "run": str(tiny.run),
            "mode": "interpolate",
            "image": prep["image"],
            "image_b": prep["image"],
            "frames": 3,
            "steps": 3,
        },
    )
    assert len(res["images"]) == 3
    res = tiny.server.run_job(
        "/api/edit",
        {
            "run": str(tiny.run),
            "mode": "swap",
            "image": prep["image"],
            "source": 1,
            "target": 7,
            "guidance": 2,
            "steps": 3,
        },
    )
    assert len(res["images"]) == 1


def test_compare_grid_cells_follow_their_axes(tiny):
    res = tiny.server.run_job(
        "/api/compare",
        {
            "run": str(tiny.run),
            "seed": 4,
            "x_axis": "sampler",
            "x_values": "euler,heun",
            "y_axis": "steps",
            "y_values": "2,3,5",
        },
    )
    assert res["x_values"] == ["euler", "heun"] and len(res["cells"]) == 3 and all(len(r) == 2 for r in res["cells"])
    for i, j in ((0, 0), (2, 1)):  # a cell is the picture `generate` draws with that cell's settings
        one = tiny.server.run_job(
            "/api/generate",
            {"run": str(tiny.run), "seed": 4, "num": 1, "sampler": res["x_values"][j], "steps": res["y_values"][i]},
        )
        assert np.array_equal(url_pixels(res["cells"][i][j]), url_pixels(one["grid"]))


def test_learn_pictures(tiny):
    img = png_url(np.full((16, 16, 3), 200, np.uint8))
    code, d = tiny.server.call("POST", "/api/learn/forward", {"image": img, "sigmas": "0,1,80", "resolution": 16})
    strip = url_pixels(d["strip"])
    assert code == 200 and strip.shape[1] > 3 * strip.shape[0] / 1.5
    first = strip[1:-1, 1 : strip.shape[0] - 1]  # the σ = 0 frame is the image itself
    assert abs(int(np.median(first)) - 200) <= 1
    for method, path, body in (("GET", "/api/learn/schedules", None), ("POST", "/api/learn/score", {"sigma": 1})):
        code, d = tiny.server.call(method, path, body)
        assert code == 200 and url_pixels(d["plot"]).shape[0] > 100


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/api/generate", {"steps": 3}, "choose a run"),
        ("/api/generate", {"run": "RUN", "steps": "ten"}, "steps must be a whole number"),
        ("/api/generate", {"run": "RUN", "steps": 10**9}, "steps must lie in"),
        ("/api/generate", {"run": "RUN", "cfg": "nan"}, "cfg must be a number"),
        ("/api/generate", {"run": "RUN", "sampler": "magic"}, "unknown sampler 'magic'"),
        ("/api/generate", {"run": "RUN", "cfg_interval": "5,1"}, "lo < hi"),
        ("/api/generate", {"run": "RUN", "clip_x0": -1}, "clip_x0 must be a number in"),
        ("/api/generate", {"run": "/no/such/run"}, "does not exist"),
        ("/api/prepare", {"run": "RUN", "image": "data:image/png;base64,bm90IGFuIGltYWdl"}, "not a readable image"),
        ("/api/prepare", {"run": "RUN", "image": "data:image/png;base64,***"}, "not valid base64"),
        ("/api/prepare", {"run": "RUN"}, "choose an image file"),
        ("/api/edit", {"run": "RUN", "mode": "inpaint", "image": "IMG"}, "no mask"),
        ("/api/edit", {"run": "RUN", "mode": "inpaint", "image": "IMG", "rect": "1,1,1,1"}, "is empty"),
        ("/api/edit", {"run": "RUN", "mode": "img2img", "image": "IMG", "strength": 2}, "strength must be"),
        ("/api/compare", {"run": "RUN", "x_axis": "steps", "x_values": "2,x"}, "whole number"),
        ("/api/compare", {"run": "RUN", "x_axis": "seed", "x_values": ",".join(map(str, range(65)))}, "at most 64"),
    ],
)
def test_bad_input_is_one_line_and_the_server_keeps_serving(tiny, path, body, needle):
    img = png_url(np.zeros((8, 8), np.uint8))
    body = {k: str(tiny.run) if v == "RUN" else img if v == "IMG" else v for k, v in body.items()}
    code, d = tiny.server.call("POST", path, body)
    assert code == 400 and needle in d["error"] and "\n" not in d["error"] and "Traceback" not in d["error"]
    assert tiny.server.call("GET", "/api/info")[0] == 200


def test_huge_unparseable_and_late_errors(tiny):
    import base64
    import io

    buf = io.BytesIO()
    Image.new("1", (4200, 4100)).save(buf, format="PNG")  # 17 M pixels in a few kB
    big = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    code, d = tiny.server.call("POST", "/api/prepare", {"run": str(tiny.run), "image": big})
    assert code == 400 and "4200x4100" in d["error"]
    code, d = tiny.server.call("POST", "/api/prepare", raw=b" " * 40_000_000)  # over the body limit: drained, answered
    assert code == 400 and "uploads are limited to 36 MB" in d["error"]
    code, d = tiny.server.call("POST", "/api/generate", raw=b"{not json")
    assert code == 400 and "not valid JSON" in d["error"]
    code, d = tiny.server.call("POST", "/api/prepare", {"image": "A" * 17_000_000})
    assert code == 400 and "larger than" in d["error"]
    code, j = tiny.server.call(
        "POST", "/api/generate", {"run": str(tiny.run), "class": 12, "steps": 2}
    )  # found by the job
    out = tiny.server.wait(j["job"])
    assert out["status"] == "error" and "class 12" in out["error"] and "Traceback" not in out["error"]
    assert tiny.server.call("GET", "/api/job?id=999999")[0] == 400 and tiny.server.call("GET", "/nope")[0] == 404


def test_one_job_at_a_time_per_model_in_order_and_models_side_by_side():
    q, running, log, lock = JobQueue(), {}, [], threading.Lock()

    def work(key, name):
        def fn(job):
            with lock:
                running[key] = running.get(key, 0) + 1
                log.append((name, running[key], sum(running.values())))
            time.sleep(0.05)
            with lock:
                running[key] -= 1
            return {"name": name}

        return fn

    jobs = [q.submit("a", work("a", f"a{i}")) for i in range(3)] + [q.submit("b", work("b", "b0"))]
    while any(j.status in ("queued", "running") for j in jobs):
        time.sleep(0.01)
    assert [j.status for j in jobs] == ["done"] * 4
    assert [n for n, _, _ in log if n.startswith("a")] == ["a0", "a1", "a2"]  # FIFO per model
    assert all(per_model == 1 for _, per_model, _ in log)  # never two jobs of one model at once
    assert any(total == 2 for _, _, total in log)  # but two models did tiny.run side by side


def test_cancel_stops_a_generation_at_the_next_step(tiny):
    _, j = tiny.server.call(
        "POST", "/api/generate", {"run": str(tiny.run), "steps": 1000, "num": 64, "sampler": "heun"}
    )
    while (st := tiny.server.call("GET", f"/api/job?id={j['job']}")[1])["done"] < 2 and st["status"] != "error":
        time.sleep(0.01)
    assert tiny.server.call("POST", "/api/cancel", {"id": j["job"]}) == (200, {"cancelled": True})
    out = tiny.server.wait(j["job"])
    assert out["status"] == "cancelled" and out["done"] < out["total"] and out["result"] is None
    assert tiny.server.run_job("/api/generate", {"run": str(tiny.run), "steps": 2, "num": 1})[
        "images"
    ]  # the model still works


def test_job_errors_become_one_line():
    q = JobQueue()

    def bad(job):
        raise NoisecraftError("a clear message")

    def crash(job):
        raise ZeroDivisionError("boom")

    jobs = [q.submit("k", bad), q.submit("k", crash)]
    while any(j.status in ("queued", "running") for j in jobs):
        time.sleep(0.01)
    assert jobs[0].error == "a clear message" and jobs[1].error == "internal error (ZeroDivisionError: boom)"


def test_ui_binds_loopback_unless_exposed(capsys):
    assert main(["ui", "--host", "0.0.0.0"]) == 2
    assert "--expose" in capsys.readouterr().err
    assert main(["ui", "--port", "70000"]) == 2


def test_a_typed_diffusers_folder_is_listed_and_samples_like_the_cli(tiny):
    from noisecraft.interop.diffusers import export_diffusers
    from noisecraft.models.factory import ModelConfig, build_denoiser

    torch.manual_seed(0)
    cfg = ModelConfig(arch="unet", resolution=8, channels=1, net_kwargs={"block_out_channels": [8, 8, 16],
                      "norm_num_groups": 4}, parameterisation="v", schedule="linear")  # fmt: skip
    denoiser, schedule = build_denoiser(cfg)
    with torch.no_grad():
        for p in denoiser.parameters():  # diffusers zero-initialises output layers: make the output non-trivial
            p.add_(0.05 * torch.randn(p.shape))
    folder = export_diffusers(denoiser.eval(), schedule, tiny.root / "exported")
    code, d = tiny.server.call("GET", f"/api/runs?extra={folder}")
    assert code == 200 and (d["runs"][0]["kind"], d["runs"][0]["size"]) == ("diffusers", "8x8x1")
    res = tiny.server.run_job("/api/generate", {"run": str(folder), "sampler": "ddim", "steps": 3, "num": 2, "seed": 5})
    out = tiny.root / "cli-diffusers"
    assert main([*shlex.split(res["command"])[1:], "--out", str(out)]) == 0
    for k, url in enumerate(res["images"]):
        assert np.array_equal(url_pixels(url), np.asarray(Image.open(out / f"seed{5 + k:06d}.png")))


def test_a_2d_toy_run_draws_its_points(tiny):
    run = tiny.root / "toy"
    assert main(["train", "--data", "toy:moons", "--steps", "3", "--batch-size", "16", "--set", "sample_every=0",
                 "--set", "trackers=[]", "--out", str(run), "--no-progress"]) == 0  # fmt: skip
    res = tiny.server.run_job("/api/generate", {"run": str(run), "steps": 3, "num": 50})
    assert res["images"] == [] and url_pixels(res["grid"]).shape[0] > 100 and "--num 50" in res["command"]
    code, d = tiny.server.call("POST", "/api/prepare", {"run": str(run), "image": png_url(np.zeros((8, 8), np.uint8))})
    assert code == 400 and "2-D points" in d["error"]


@pytest.mark.parametrize(
    ("mode", "extra", "outputs"),
    [
        ("img2img", {"strength": 0.5, "num": 2, "class": 4, "guidance": 2}, ["img2img_000_00.png",
                                                                             "img2img_000_01.png"]),
        ("inpaint", {"num": 2, "mask": "MASK", "method": "repaint", "jump": 2, "resample": 2}, ["inpaint_00.png",
                                                                                                "inpaint_01.png"]),
        ("inpaint", {"num": 1, "rect": "1,1,5,4"}, ["inpaint_00.png"]),
        ("invert", {"iters": 1}, ["reconstruction_000.png"]),
        ("interpolate", {"frames": 3, "iters": 1}, [f"frame_{i:03d}.png" for i in range(3)]),
        ("swap", {"source": 2, "target": 6, "guidance": 2, "strength": 0.8, "iters": 1}, ["swap_000.png"]),
    ],
)  # fmt: skip
def test_edits_give_the_pixels_of_the_command_they_show(tiny, tmp_path, mode, extra, outputs):
    rng = np.random.default_rng(3)
    a, b = (png_url(rng.integers(0, 256, (8, 8), dtype=np.uint8)) for _ in range(2))
    mask = np.zeros((8, 8), np.uint8)
    mask[3:6, 2:7] = 255
    body = {"run": str(tiny.run), "mode": mode, "image": a, "image_b": b, "steps": 4, "seed": 9, "sampler": "euler"}
    body.update({k: png_url(mask) if v == "MASK" else v for k, v in extra.items()})
    res = tiny.server.run_job("/api/edit", body)
    for name, url in (("input.png", a), ("input_b.png", b), ("mask.png", png_url(mask))):
        Image.fromarray(url_pixels(url)).save(tmp_path / name)
    argv = shlex.split(res["command"])
    argv = [str(tmp_path / v) if v in ("input.png", "input_b.png", "mask.png") else v for v in argv]
    assert main([*argv[1:], "--out", str(tmp_path / "cli")]) == 0
    assert len(res["images"]) == len(outputs)
    for url, name in zip(res["images"], outputs):
        assert np.array_equal(url_pixels(url), np.asarray(Image.open(tmp_path / "cli" / name))), name


@pytest.fixture
def text_run(fake_fashion_mnist, tmp_path, monkeypatch):
    """A latent text-to-image run built in seconds (web_helpers.train_tiny_text_run) beside its own studio."""
    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    run = train_tiny_text_run(tmp_path)
    server = Server(tmp_path / "runs")
    yield run, server
    server.close()


def test_a_text_run_generates_the_pixels_of_its_prompt_command(text_run, tmp_path, capsys):
    run, server = text_run
    code, d = server.call("GET", "/api/runs")
    (r,) = d["runs"]
    assert code == 200 and r["text"] == "clip" and r["latent"] and r["classes"] == 0
    body = {"run": str(run), "prompt": "a red bag on the left", "negative_prompt": "a blue coat", "cfg": 3,
            "sampler": "heun", "steps": 3, "seed": 5, "num": 2}  # fmt: skip
    res = server.run_job("/api/generate", body)
    argv = shlex.split(res["command"])
    assert "--prompt" in argv and argv[argv.index("--negative-prompt") + 1] == "a blue coat" and "--cfg" in argv
    assert main([*argv[1:], "--out", str(tmp_path / "cli")]) == 0
    for k, url in enumerate(res["images"]):
        studio = url_pixels(url)
        assert studio.shape == (32, 32, 3)  # decoded from the 4x8x8 latent to pixels
        assert np.array_equal(studio, np.asarray(Image.open(tmp_path / "cli" / f"seed{5 + k:06d}.png")))
    assert url_pixels(res["trajectory"]).shape[0] >= 32 and "message" not in res
    other = server.run_job("/api/generate", {**body, "prompt": "left: empty; right: white coat"})
    assert not np.array_equal(url_pixels(other["images"][0]), url_pixels(res["images"][0]))  # the prompt matters
    # a compare cell is the picture generate draws with that cell's settings
    grid = server.run_job("/api/compare", {**body, "x_axis": "cfg", "x_values": "1,3"})
    one = server.run_job("/api/generate", {**body, "num": 1})  # one image per pass, as a cell is drawn
    assert np.array_equal(url_pixels(grid["cells"][0][1]), url_pixels(one["grid"]))
    assert not np.array_equal(url_pixels(grid["cells"][0][0]), url_pixels(one["grid"]))  # cfg 1 differs
    # a prompt longer than the encoder's 16 tokens is truncated with the CLI's warning, shown in the page
    long = server.run_job("/api/generate", {**body, "prompt": "a red bag on the left " * 3, "num": 1})
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "a red bag on the left " * 3, "--steps", "2", "--num", "1",
                 "--out", str(tmp_path / "long")]) == 0  # fmt: skip
    cli_warning = capsys.readouterr().err.strip()
    assert "truncated" in long["message"] and long["message"] == cli_warning
    # bad input: one line before any work, never a traceback
    for bad, needle in (
        ({"prompt": "  "}, "type a prompt"),
        ({"prompt": None}, "type a prompt"),
        ({"class": 3}, "not a class"),
        ({"cfg": None}, "give a CFG scale"),
        ({"prompt": 7}, "must be text"),
    ):
        code, err = server.call("POST", "/api/generate", {**body, **bad})
        assert code == 400 and needle in err["error"] and "Traceback" not in err["error"], (bad, err)
    code, err = server.call("POST", "/api/compare", {**body, "x_axis": "class", "x_values": "1,2"})
    assert code == 400 and "no classes" in err["error"]
    code, err = server.call("POST", "/api/edit", {"run": str(run), "mode": "img2img"})
    assert (
        code == 400
        and err["error"] == "editing a text-to-image run is not supported in the studio yet: use the Generate tab"
    )


def test_a_prompt_for_a_run_without_text_is_refused(tiny):
    code, err = tiny.server.call("POST", "/api/generate", {"run": str(tiny.run), "prompt": "a red bag"})
    assert code == 400 and "not text-conditioned" in err["error"]
