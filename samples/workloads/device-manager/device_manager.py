# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sample device manager: reports the device's workloads over HTTP.

  GET /health   200 {"status": "ok", "version"}
  GET /status   200 {"service", "version", "uptime_s", "predictor": {...}, "dashboard_token": "present"|"absent"}
The predictor's health is fetched from $PREDICTOR_URL/health (default http://predictor:8080) on the
workloads' internal network. The dashboard token (a Docker/compose secret at
$DASHBOARD_TOKEN_FILE, default /run/secrets/dashboard_token) is read to know whether it is usable,
and is never printed, logged or returned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import logging
import os
import sys
import time

import edgeops_service as service

LOG = logging.getLogger("edgeops")


def token_state(path):
    """'present' when the secret holds a non-empty token, else 'absent'. The token itself stays here."""
    try:
        with open(path) as handle:
            return "present" if handle.read().strip() else "absent"
    except OSError:
        return "absent"


def predictor_health(base_url):
    status, payload, error = service.http_get_json(base_url.rstrip("/") + "/health")
    result = {"url": base_url, "healthy": status == 200, "http_status": status}
    if isinstance(payload, dict):
        result["status"] = payload.get("status")
        result["version"] = payload.get("version")
    if error:
        result["error"] = error
    return result


def make_handler(started, predictor_url, token_file):
    class Handler(service.JsonHandler):
        def route(self, method, path, query, body):
            if method == "GET" and path == "/health":
                return 200, {"status": "ok", "version": service.version()}
            if method == "GET" and path == "/status":
                return 200, {"service": "device-manager", "version": service.version(),
                             "uptime_s": round(time.monotonic() - started, 1),
                             "predictor": predictor_health(predictor_url),
                             "dashboard_token": token_state(token_file)}
            return 404, {"error": "no such endpoint: %s %s" % (method, path)}
    return Handler


def main():
    service.setup_logging("device-manager")
    try:
        port = service.env_int("DEVICE_MANAGER_PORT", 8081, 1, 65535)
    except service.SettingError as err:
        LOG.error("cannot start: %s", err)
        return 2
    predictor_url = os.environ.get("PREDICTOR_URL", "http://predictor:8080")
    token_file = os.environ.get("DASHBOARD_TOKEN_FILE", "/run/secrets/dashboard_token")
    LOG.info("device-manager %s starting: predictor %s, dashboard token %s", service.version(), predictor_url,
             token_state(token_file))
    return service.serve(make_handler(time.monotonic(), predictor_url, token_file), port)


if __name__ == "__main__":
    sys.exit(main())
