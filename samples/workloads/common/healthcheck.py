# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""/usr/local/bin/healthcheck of every sample image: exit 0 when healthy, 1 when not.

HEALTHCHECK_URL set (predictor, device-manager): healthy when GET answers 200.
Else (trainer): healthy while $TRAINER_MODELS_DIR/current.json is younger than
TRAINER_HEALTH_MAX_AGE seconds (default: 3 training intervals, at least 60 s), or, before the
first checkpoint, while the container has run less than that.

Docker runs it as a new process on every probe of every container, so it imports only `os`, `socket`, `sys`, `time`
and the settings parser (measured under the suite's load: 0.25 CPU-s per probe when it went through the services'
HTTP stack, urllib/http.client/ssl/logging; see samples/workloads/README.md).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import sys
import time

import edgeops_settings as settings


def split_http_url(url):
    """(host, port, path) of an http:// URL; ValueError naming HEALTHCHECK_URL otherwise."""
    if not url.startswith("http://"):
        raise ValueError("HEALTHCHECK_URL must be an http:// URL, got %r" % url)
    netloc, slash, path = url[len("http://"):].partition("/")
    host, colon, port = netloc.rpartition(":")
    if not colon:
        host, port = netloc, "80"
    if not host or not port.isdigit():
        raise ValueError("HEALTHCHECK_URL must be http://host[:port]/path, got %r" % url)
    return host, int(port), slash + path


def url_healthy(url, timeout=5.0):
    """Healthy when a GET of url answers 200 (HTTP/1.0, the status line is all that is read)."""
    host, port, path = split_http_url(url)
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path or "/", host)).encode("ascii"))
        head = b""
        while b"\r\n" not in head and len(head) < 1024:
            chunk = conn.recv(1024)
            if not chunk:
                break
            head += chunk
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split()
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1] == "200":
        return True, "HTTP 200"
    return False, "answered %r" % status_line if status_line else "no answer"


def container_age():
    """Seconds since PID 1 (the service) started, from /proc (start time in clock ticks since boot)."""
    with open("/proc/1/stat") as handle:
        start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as handle:
        uptime = float(handle.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def checkpoint_healthy(now=None):
    now = time.time() if now is None else now
    interval = settings.env_int("TRAINER_INTERVAL", 60, 1, 86400)
    max_age = settings.env_int("TRAINER_HEALTH_MAX_AGE", max(3 * interval, 60), 1)
    current = os.path.join(os.environ.get("TRAINER_MODELS_DIR", "/models"), "current.json")
    try:
        age = now - os.stat(current).st_mtime
    except OSError:
        # No checkpoint yet: give the container (its PID 1) max_age to write one.
        age = container_age()
        return age <= max_age, "no checkpoint yet after %.0fs (limit %ds)" % (age, max_age)
    return age <= max_age, "last checkpoint %.0fs old (limit %ds)" % (age, max_age)


def main():
    url = os.environ.get("HEALTHCHECK_URL")
    try:
        healthy, detail = url_healthy(url) if url else checkpoint_healthy()
    except (settings.SettingError, OSError, ValueError, IndexError) as err:
        healthy, detail = False, str(err)
    sys.stdout.write("%s: %s\n" % ("healthy" if healthy else "unhealthy", detail))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
