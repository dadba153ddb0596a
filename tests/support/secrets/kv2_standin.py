# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A STAND-IN for HashiCorp Vault's KV version 2 read API, on loopback, for tests only.

No Vault server can be installed here (no Debian or PyPI package ships one; PyPI's hvac is a client), so the
``hashi_vault`` source is tested against this: the three requests the community.hashi_vault lookup makes through
hvac with token auth - ``GET /v1/auth/token/lookup-self``, ``GET /v1/<mount>/data/<path>[?version=N]`` - answered
in Vault's JSON shapes, with the token checked (403 otherwise) and 404 for an unknown path. Nothing else of Vault
(policies, leases, other engines, writes over HTTP) is imitated: tests change the secrets in-process.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class KV2StandIn(object):
    """``secrets``: {mount: {path: [version 1 data, version 2 data, ...]}}; ``put`` adds a version."""

    def __init__(self, token, host="127.0.0.1", port=0):
        self.token = token
        self.secrets = {}
        self.requests = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the test reads self.requests
                pass

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - the name http.server calls
                url = urlparse(self.path)
                stand_in.requests.append(url.path)
                if self.headers.get("X-Vault-Token") != stand_in.token:
                    return self._answer(403, {"errors": ["permission denied"]})
                if url.path == "/v1/auth/token/lookup-self":
                    return self._answer(200, {"data": {"id": "stand-in", "policies": ["default"], "ttl": 0,
                                                       "renewable": False, "type": "service"}})
                parts = url.path.split("/")
                if len(parts) < 5 or parts[1] != "v1" or parts[3] != "data":
                    return self._answer(404, {"errors": []})
                mount, path = parts[2], "/".join(parts[4:])
                versions = stand_in.secrets.get(mount, {}).get(path)
                if not versions:
                    return self._answer(404, {"errors": []})
                wanted = int(parse_qs(url.query).get("version", [len(versions)])[0] or len(versions))
                if not 1 <= wanted <= len(versions):
                    return self._answer(404, {"errors": []})
                return self._answer(200, {
                    "request_id": "stand-in", "lease_id": "", "renewable": False, "lease_duration": 0,
                    "data": {"data": versions[wanted - 1],
                             "metadata": {"created_time": "2026-01-01T00:00:00Z", "custom_metadata": None,
                                          "deletion_time": "", "destroyed": False, "version": wanted}},
                    "wrap_info": None, "warnings": None, "auth": None})

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = "http://%s:%d" % self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def put(self, path, data, mount="secret"):
        self.secrets.setdefault(mount, {}).setdefault(path, []).append(dict(data))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
