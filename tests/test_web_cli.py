"""`noisecraft ui` as a user starts it (docs/ui.md's commands): a process that prints its address and answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest


def _start(*argv: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "noisecraft.cli.main", "ui", *argv], stdout=subprocess.PIPE, text=True, env=env
    )
    line = proc.stdout.readline()
    assert "noisecraft studio on http://" in line, line
    return proc, line.split()[3]


@pytest.mark.parametrize("extra", [(), ("--host", "0.0.0.0", "--expose")])
def test_ui_command_serves_the_page_and_the_registry(tmp_path, extra):
    proc, url = _start("--runs", str(tmp_path), "--port", "0", *extra)
    try:
        if extra:
            assert url.startswith("http://0.0.0.0:")
            url = url.replace("0.0.0.0", "127.0.0.1")
        with urllib.request.urlopen(url + "/") as r:
            page = r.read().decode()
        assert "noisecraft studio" in page and "https://" not in page and "http://" not in page  # nothing from a CDN
        with urllib.request.urlopen(url + "/app.js") as r:
            assert b"https://" not in r.read()
        with urllib.request.urlopen(url + "/api/runs") as r:
            assert json.loads(r.read()) == {"runs": [], "classifiers": []}
    finally:
        proc.terminate()  # SIGTERM: SIGINT is ignored in background jobs
        proc.wait(timeout=60)
    assert proc.returncode in (0, 130, -15)
