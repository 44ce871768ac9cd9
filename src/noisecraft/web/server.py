"""The studio's HTTP server: Python's standard-library ThreadingHTTPServer, a hand-written page from this
package (no CDN, works offline), and a small JSON API. Every failure becomes a JSON {"error": one line}; the
server keeps serving.

  GET  /                     the page (static/index.html, app.js, style.css)
  GET  /api/info             samplers and step schedules (from the registries), device
  GET  /api/runs?extra=PATH  runs under --runs (and one typed path): data, size, steps, sample grid
  POST /api/generate         → {"job": id}   (JSON fields: run, sampler, steps, schedule, seed, num, class, ...)
  POST /api/compare          → {"job": id}   an X/Y grid
  POST /api/prepare          an upload converted to the run's input (the page shows it and paints masks on it)
  POST /api/edit             → {"job": id}   img2img, inpaint, invert, interpolate, swap
  GET  /api/job?id=N         status, progress, x̂0 preview, result or error
  POST /api/cancel           {"id": N}: stop at the next sampler step
  POST /api/learn/forward | GET /api/learn/schedules | POST /api/learn/score
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlparse

from noisecraft.errors import NoisecraftError
from noisecraft.web.params import MAX_UPLOAD_BYTES

MAX_BODY = 3 * MAX_UPLOAD_BYTES  # two images and a mask, base64-encoded
DRAIN_MAX = 512 * 10**6  # larger bodies are not read: the connection is closed
STATIC = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
          "/style.css": ("style.css", "text/css")}  # fmt: skip


def _static(name: str) -> bytes:
    return resources.files("noisecraft.web").joinpath("static", name).read_bytes()


class LazyStudio:
    """Builds the Studio (which imports torch) on first use, so that the page answers before torch has loaded."""

    def __init__(self, factory):
        self._factory, self._lock, self._studio = factory, threading.Lock(), None

    def get(self):
        with self._lock:
            if self._studio is None:
                self._studio = self._factory()
        return self._studio


def make_handler(studio) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one Studio (or a LazyStudio)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "noisecraft-ui"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: errors are printed where they happen
            pass

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, json.dumps(obj).encode(), "application/json")

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                self.close_connection = True
                left = n if n <= DRAIN_MAX else 0  # read it away, so that the browser receives the message
                while left > 0 and (chunk := self.rfile.read(min(1 << 20, left))):
                    left -= len(chunk)
                raise NoisecraftError(f"the request is {n / 1e6:.0f} MB; uploads are limited to {MAX_BODY // 10**6} MB")
            raw = self.rfile.read(n) if n else b"{}"
            try:
                return json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise NoisecraftError("the request body is not valid JSON") from None

        def _handle(self, method: str) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if method == "GET" and url.path in STATIC:
                    name, ctype = STATIC[url.path]
                    return self._send(200, _static(name), ctype + "; charset=utf-8")
                route = ROUTES.get((method, url.path))
                if route is None:
                    return self._json(404, {"error": f"no such page: {method} {url.path}"})
                body = self._body() if method == "POST" else query
                return self._json(200, route(studio.get() if isinstance(studio, LazyStudio) else studio, body))
            except NoisecraftError as e:
                return self._json(400, {"error": str(e)})
            except Exception as e:  # one line to the page; the traceback to the terminal
                traceback.print_exc(file=sys.stderr)
                return self._json(500, {"error": f"internal error ({type(e).__name__}: {e})"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


def _job(studio, q: dict) -> dict[str, Any]:
    try:
        job_id = int(q.get("id", ""))
    except ValueError:
        raise NoisecraftError("job id must be a number") from None
    found = studio.jobs.get(job_id)
    if found is None:
        raise NoisecraftError(f"no job {job_id} (finished jobs are kept for a while only)")
    job, position = found
    return job.view(position)


def _cancel(studio, body: dict) -> dict[str, Any]:
    try:
        return {"cancelled": studio.jobs.cancel(int(body.get("id")))}
    except (TypeError, ValueError):
        raise NoisecraftError("job id must be a number") from None


ROUTES = {
    ("GET", "/api/info"): lambda s, q: s.info(),
    ("GET", "/api/runs"): lambda s, q: s.runs(q.get("extra") or None),
    ("POST", "/api/generate"): lambda s, b: s.generate(b),
    ("POST", "/api/compare"): lambda s, b: s.compare(b),
    ("POST", "/api/prepare"): lambda s, b: s.prepare(b),
    ("POST", "/api/edit"): lambda s, b: s.edit(b),
    ("GET", "/api/job"): _job,
    ("POST", "/api/cancel"): _cancel,
    ("POST", "/api/learn/forward"): lambda s, b: s.forward_strip(b),
    ("GET", "/api/learn/schedules"): lambda s, q: s.schedules_plot(),
    ("POST", "/api/learn/score"): lambda s, b: s.score_field(b),
}


def make_server(studio, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A server for `studio` bound to host:port (port 0: any free port; see server.server_address)."""
    server = ThreadingHTTPServer((host, port), make_handler(studio))
    server.daemon_threads = True
    return server
