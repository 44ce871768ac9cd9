"""The web studio end to end in a real headless Chromium (Debian's `chromium` driven by Playwright): choose a run,
generate and compare the pixels with `noisecraft sample`; paint a mask and inpaint; a corrupt upload shows a
message; two tabs generating at once both finish; a text run shows prompt boxes instead of the class fields."""

from __future__ import annotations

import shlex
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from noisecraft.cli.main import main
from web_helpers import Server, train_tiny_runs, train_tiny_text_run, url_pixels


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine (scripts/setup.sh installs Debian's chromium where apt exists)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("web-browser")
    run, _ = train_tiny_runs(root)
    server = Server(root / "runs")
    yield SimpleNamespace(root=root, run=run, server=server)
    server.close()


def _open(browser, server):
    page = browser.new_page()
    page.goto(server.url)
    page.wait_for_selector("body[data-ready='1']")
    return page


def _settings(page, sampler: str, steps: int, seed: int, num: int) -> None:
    page.click("button[data-tab=generate]")
    page.select_option("#sampler", sampler)
    page.fill("#steps", str(steps))
    page.fill("#seed", str(seed))
    page.fill("#num", str(num))


def test_generate_in_the_page_gives_the_pixels_of_noisecraft_sample(browser, studio):
    page = _open(browser, studio.server)
    assert page.locator("#runs-table tbody tr").count() == 1 and "digits" in page.inner_text("#runs-table")
    page.click("#runs-table tbody tr")
    assert page.input_value("#run") == str(studio.run)
    _settings(page, "dpmpp_2m", 5, 21, 3)
    page.fill("#class", "7")
    page.click("#generate")
    page.wait_for_selector("#images[data-done]", timeout=0)
    srcs = page.eval_on_selector_all("#images img.sample", "els => els.map(e => e.src)")
    command = page.inner_text("#command")
    assert len(srcs) == 3 and "--sampler dpmpp_2m --steps 5 --num 3 --seed 21 --class 7" in command
    assert page.get_attribute("#preview", "src").startswith("data:image/png")
    assert page.get_attribute("#trajectory", "src").startswith("data:image/png")
    out = studio.root / "cli-sample"
    argv = [
        "sample",
        str(studio.run),
        "--sampler",
        "dpmpp_2m",
        "--steps",
        "5",
        "--seed",
        "21",
        "--num",
        "3",
        "--class",
        "7",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    for k, src in enumerate(srcs):
        assert np.array_equal(url_pixels(src), np.asarray(Image.open(out / f"seed{21 + k:06d}.png")))
    page.close()


def test_paint_a_mask_and_inpaint_keeps_the_unmasked_pixels(browser, studio, tmp_path):
    page = _open(browser, studio.server)
    rng = np.random.default_rng(1)
    pic = tmp_path / "digit.png"
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(pic)
    _settings(page, "euler", 4, 3, 1)
    page.click("button[data-tab=edit]")
    page.select_option("#edit-mode", "inpaint")
    page.set_input_files("#edit-file", str(pic))
    page.wait_for_function("document.getElementById('edit-input').src.startsWith('data:')")
    page.fill("#brush", "2")
    page.fill("#edit-num", "2")
    box = page.locator("#mask-canvas").bounding_box()  # 256 px for 8 model pixels: 32 px each
    page.mouse.move(box["x"] + 2.5 * 32, box["y"] + 3.5 * 32)
    page.mouse.down()
    page.mouse.move(box["x"] + 5.5 * 32, box["y"] + 3.5 * 32, steps=8)
    page.mouse.up()
    mask = url_pixels(page.evaluate("maskPNG()"))[..., 0] > 0
    assert mask.sum() >= 8 and not mask[0].any() and mask[3, 3]  # a brush stroke of width 2 along row 3
    page.click("#edit-run")
    page.wait_for_selector("#edit-result[data-done]", timeout=0)
    x = url_pixels(page.get_attribute("#edit-input", "src"))
    assert np.array_equal(x, np.asarray(Image.open(pic)))
    assert "noisecraft edit inpaint" in page.inner_text("#edit-command") and "--mask mask.png" in page.inner_text(
        "#edit-command"
    )
    painted = url_pixels(page.get_attribute("#dl-extra a[download='mask.png']", "href"))[..., 0] > 0
    assert np.array_equal(painted, mask)  # the mask offered for the command is the one painted
    outs = page.eval_on_selector_all("#edit-result img.edited", "els => els.map(e => e.src)")
    assert len(outs) == 2
    for src in outs:
        y = url_pixels(src)
        assert np.array_equal(y[~mask], x[~mask]) and not np.array_equal(y[mask], x[mask])
    page.close()


def test_a_corrupt_upload_shows_a_message_and_the_page_keeps_working(browser, studio, tmp_path):
    page = _open(browser, studio.server)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    page.click("button[data-tab=edit]")
    page.set_input_files("#edit-file", str(bad))
    page.wait_for_selector("#message:not([hidden])")
    msg = page.inner_text("#message")
    assert "not a readable image" in msg and "Traceback" not in msg
    page.click("button[data-tab=generate]")
    page.fill("#steps", "-3")
    page.click("#generate")
    page.wait_for_function("document.getElementById('message').textContent.includes('steps must lie in')")
    _settings(page, "euler", 2, 0, 1)
    page.click("#generate")
    page.wait_for_selector("#images[data-done]", timeout=0)
    assert page.locator("#images img.sample").count() == 1
    page.close()


def test_two_tabs_generating_at_once_both_finish(browser, studio):
    pages = [_open(browser, studio.server) for _ in range(2)]
    for k, page in enumerate(pages):
        _settings(page, "heun", 30, 100 * k, 16)
    for page in pages:
        page.click("#generate")
    for page in pages:
        page.wait_for_selector("#images[data-done]", timeout=0)
    a, b = (p.eval_on_selector_all("#images img.sample", "els => els.map(e => e.src)") for p in pages)
    assert len(a) == len(b) == 16 and a != b  # each tab got its own seeds' images
    res = studio.server.run_job(
        "/api/generate", {"run": str(studio.run), "sampler": "heun", "steps": 30, "seed": 100, "num": 16}
    )
    assert res["images"] == b  # the second tab's images, untouched by the first tab's job
    for page in pages:
        page.close()


def test_learn_tab_draws_its_pictures(browser, studio, tmp_path):
    page = _open(browser, studio.server)
    pic = tmp_path / "rgb.png"
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(pic)
    page.click("button[data-tab=learn]")
    page.set_input_files("#learn-file", str(pic))
    page.fill("#learn-res", "16")
    page.click("#learn-forward")
    page.wait_for_function("document.getElementById('forward-strip').src.startsWith('data:')")
    page.click("#learn-score")
    page.wait_for_function("document.getElementById('score-plot').src.startsWith('data:')")
    assert url_pixels(page.get_attribute("#forward-strip", "src")).shape[1] > 16 * 7
    page.close()


def test_a_text_run_takes_a_prompt_in_the_page(browser, fake_fashion_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("NOISECRAFT_CACHE", str(tmp_path / "cache"))
    run = train_tiny_text_run(tmp_path)
    server = Server(tmp_path / "runs")
    try:
        page = _open(browser, server)
        assert "text (clip)" in page.inner_text("#runs-table")
        page.click("#runs-table tbody tr")
        assert page.input_value("#run") == str(run)
        _settings(page, "euler", 3, 9, 2)
        assert page.is_visible("#prompt") and page.is_visible("#negative-prompt")
        assert not page.is_visible("#class") and not page.is_visible("#classifier")
        page.click("#generate")  # no prompt yet: a message, no job
        page.wait_for_function("document.getElementById('message').textContent.includes('type a prompt')")
        page.fill("#prompt", "a red bag")
        page.fill("#negative-prompt", "a coat")
        page.fill("#cfg", "2")
        page.click("#generate")
        page.wait_for_selector("#images[data-done]", timeout=0)
        srcs = page.eval_on_selector_all("#images img.sample", "els => els.map(e => e.src)")
        command = page.inner_text("#command")
        assert "--prompt 'a red bag' --negative-prompt 'a coat'" in command and "--cfg 2" in command
        out = tmp_path / "cli"
        assert main([*shlex.split(command)[1:], "--out", str(out)]) == 0
        for k, src in enumerate(srcs):
            assert np.array_equal(url_pixels(src), np.asarray(Image.open(out / f"seed{9 + k:06d}.png")))
    finally:
        server.close()
