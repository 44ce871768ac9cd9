"""Start the web studio: a local page to sample, compare, edit and learn with your runs (see docs/ui.md).

It binds to 127.0.0.1 (this machine only). Serving on another interface lets anyone who can reach the port
run models and read any image or run folder the server's user can read, so it needs --expose as well; there
is no public tunnel.

Examples:
  noisecraft ui                                  # runs/ at http://127.0.0.1:7860
  noisecraft ui --runs my_runs --port 8000
  noisecraft ui --host 0.0.0.0 --expose          # the local network too: read docs/ui.md first
"""

from __future__ import annotations

import argparse

from noisecraft.cli.args import add_device_argument

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default="runs", help="folder of runs to list")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (other than loopback needs --expose)")
    p.add_argument("--port", type=int, default=7860, help="port (0: any free port)")
    p.add_argument("--expose", action="store_true", help="allow a --host other than loopback (see the risk above)")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    from noisecraft.errors import NoisecraftError

    if args.host not in LOOPBACK and not args.expose:
        raise NoisecraftError(
            f"--host {args.host} serves beyond this machine: anyone who reaches it can run models and read files "
            "the server can read; add --expose if you mean it"
        )
    if not 0 <= args.port <= 65535:
        raise NoisecraftError(f"--port must be in [0, 65535], got {args.port}")
    import threading

    from noisecraft.web.server import LazyStudio, make_server

    def build():
        from noisecraft.web.studio import Studio

        return Studio(args.runs, args.device)

    studio = LazyStudio(build)
    try:
        server = make_server(studio, args.host, args.port)
    except OSError as e:
        raise NoisecraftError(f"cannot listen on {args.host}:{args.port} ({e.strerror}); try another --port") from None
    threading.Thread(target=studio.get, daemon=True).start()  # import torch while the page loads
    host, port = server.server_address[:2]
    print(f"noisecraft studio on http://{host}:{port} (runs: {args.runs}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
