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


def test_type_checking_block_matches_the_lazy_api():
    """IDEs and type checkers read the TYPE_CHECKING imports; they must name exactly the lazy exports, each
    from the module __getattr__ loads it from."""
    import ast
    from pathlib import Path

    import noisecraft

    tree = ast.parse(Path(noisecraft.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {a.name: imp.module for imp in block.body if isinstance(imp, ast.ImportFrom) for a in imp.names}
    assert seen == noisecraft._EXPORTS
