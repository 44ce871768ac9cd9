"""Screenshots of each tab of the web studio for docs/images/ (ui-runs.png, ui-generate.png, ...).

Drives the page in headless Chromium (Playwright on the system's chromium) against a studio over the run's
parent folder, with a digit of the built-in test split as the upload.

  python scripts/ui_screenshots.py --run runs/digits-cond --out docs/images
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a (class-conditional) image run")
    ap.add_argument("--out", default="docs/images")
    ap.add_argument("--class", dest="label", default="3")
    args = ap.parse_args()
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from noisecraft.data.transforms import to_pixels
    from noisecraft.evaluation.reference import reference_images

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from web_helpers import Server

    run, out = Path(args.run), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    imgs, _ = reference_images("digits", "test")
    digit, other = tmp / "digit.png", tmp / "other.png"
    for path, k in ((digit, 3), (other, 11)):
        Image.fromarray(to_pixels(imgs[k])[0].numpy(), "L").resize((64, 64), Image.Resampling.LANCZOS).save(path)
    server = Server(run.parent)
    with sync_playwright() as pw:
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        page.select_option("#run", str(run))
        page.screenshot(path=out / "ui-runs.png")

        page.click("button[data-tab=generate]")
        page.select_option("#sampler", "heun")
        page.select_option("#schedule", "karras")
        page.fill("#steps", "20")
        page.fill("#num", "16")
        page.fill("#class", args.label)
        page.fill("#cfg", "2")
        page.click("#generate")
        page.wait_for_selector("#images[data-done]", timeout=600_000)
        page.screenshot(path=out / "ui-generate.png", full_page=True)

        page.click("button[data-tab=compare]")
        page.select_option("#x-axis", "sampler")
        page.fill("#x-values", "euler,heun,dpmpp_2m,unipc")
        page.select_option("#y-axis", "steps")
        page.fill("#y-values", "4,8,16")
        page.click("#compare-run")
        page.wait_for_selector("#compare-grid[data-done]", timeout=600_000)
        page.screenshot(path=out / "ui-compare.png", full_page=True)

        page.click("button[data-tab=edit]")
        page.select_option("#edit-mode", "inpaint")
        page.set_input_files("#edit-file", str(digit))
        page.wait_for_function("document.getElementById('edit-input').src.startsWith('data:')")
        page.fill("#brush", "3")
        page.fill("#edit-num", "6")
        box = page.locator("#mask-canvas").bounding_box()
        page.mouse.move(box["x"] + 60, box["y"] + 40)
        page.mouse.down()
        page.mouse.move(box["x"] + 200, box["y"] + 120, steps=20)
        page.mouse.up()
        page.click("#edit-run")
        page.wait_for_selector("#edit-result[data-done]", timeout=600_000)
        page.screenshot(path=out / "ui-edit.png", full_page=True)

        page.click("button[data-tab=learn]")
        page.set_input_files("#learn-file", str(digit))
        page.click("#learn-forward")
        page.wait_for_function("document.getElementById('forward-strip').src.startsWith('data:')")
        page.click("#learn-schedules")
        page.wait_for_function("document.getElementById('schedules-plot').src.startsWith('data:')")
        page.click("#learn-score")
        page.wait_for_function("document.getElementById('score-plot').src.startsWith('data:')")
        page.screenshot(path=out / "ui-learn.png", full_page=True)
        browser.close()
    server.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {', '.join(f'ui-{t}.png' for t in ('runs', 'generate', 'compare', 'edit', 'learn'))} in {out}")


if __name__ == "__main__":
    main()
