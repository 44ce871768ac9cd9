"""`noisecraft --help` must stay instant: building the parser imports no heavy library."""

import subprocess
import sys

HEAVY = ("torch", "diffusers", "accelerate", "transformers", "matplotlib", "datasets")


def test_cli_parser_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from noisecraft.cli.main import build_parser\n"
        "build_parser()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"heavy modules imported at --help: {r.stdout.strip()}"


def test_help_lists_commands():
    r = subprocess.run([sys.executable, "-m", "noisecraft.cli.main", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "demo" in r.stdout


def test_package_import_is_lazy():
    code = (
        "import sys, noisecraft; print('torch' in sys.modules); noisecraft.make_schedule; print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.split() == ["False", "True"], r.stdout + r.stderr
