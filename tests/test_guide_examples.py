"""Every runnable example of docs/guide runs at its smallest setting and writes its pictures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide"
EXAMPLES = sorted(GUIDE.glob("ex*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"guide_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_guide_has_one_example_per_concept():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_and_draws(path, tmp_path):
    mod = _load(path)
    assert mod.__doc__ and "python docs/guide/" in mod.__doc__  # says what it shows and how to run it
    outs = mod.main(out_dir=tmp_path, **mod.SMALLEST)
    assert outs
    for out in outs:
        with Image.open(out) as im:
            assert im.format in ("PNG", "GIF") and im.width > 100
