# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every sample service shares: settings from the environment, logging to stdout, a JSON
HTTP handler and a clean stop on SIGTERM."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import logging
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, urlsplit
from urllib.request import urlopen

# The settings' parser lives apart so that the health check can import it alone; the services read it from here.
from edgeops_settings import SettingError, env_float, env_int  # noqa: F401 pylint: disable=unused-import

LOG = logging.getLogger("edgeops")


def setup_logging(service):
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s " + service + " %(levelname)s %(message)s")


def version():
    return os.environ.get("EDGEOPS_VERSION", "0.0.0-dev")


class JsonHandler(BaseHTTPRequestHandler):
    """Request handler answering JSON; subclasses implement route(method, path, query, body)."""

    server_version = "edgeops-sample"
    protocol_version = "HTTP/1.1"
    max_body = 64 * 1024

    def route(self, method, path, query, body):  # pragma: no cover - overridden
        raise NotImplementedError

    def _handle(self, method):
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_body:
            self.send_json(413, {"error": "body larger than %d bytes" % self.max_body})
            return
        body = self.rfile.read(length) if length else b""
        try:
            status, payload = self.route(method, parts.path, parse_qs(parts.query), body)
        except Exception:  # pylint: disable=broad-except
            LOG.exception("%s %s failed", method, parts.path)
            status, payload = 500, {"error": "internal error"}
        self.send_json(status, payload)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def send_json(self, status, payload):
        data = (json.dumps(payload, sort_keys=True) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        # Request lines go to stdout with the service's other logs (http.server writes stderr).
        LOG.info("%s %s", self.address_string(), format % args)


def on_sigterm(callback):
    """Run callback (in a thread, so a blocking server loop can be stopped) on SIGTERM/SIGINT."""
    def handler(signum, dummy_frame):
        LOG.info("signal %d: stopping", signum)
        threading.Thread(target=callback, daemon=True).start()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def serve(handler_class, port, before_serving=None):
    """Serve until SIGTERM, then return 0 (so the process exits cleanly)."""
    server = ThreadingHTTPServer(("0.0.0.0", port), handler_class)
    server.daemon_threads = True
    on_sigterm(server.shutdown)
    if before_serving:
        before_serving(server)
    LOG.info("listening on port %d", port)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    LOG.info("stopped")
    return 0


def http_get_json(url, timeout=2.0):
    """(status, parsed JSON or None, error text or None) of a GET; never raises for HTTP/network errors."""
    try:
        with urlopen(url, timeout=timeout) as response:  # nosec - URLs come from the image's settings
            status, raw = response.status, response.read()
    except HTTPError as err:
        status, raw = err.code, err.read()
    except (URLError, OSError, ValueError) as err:
        return None, None, str(getattr(err, "reason", err))
    try:
        return status, json.loads(raw.decode("utf-8")), None
    except ValueError:
        return status, None, "answer is not JSON"
