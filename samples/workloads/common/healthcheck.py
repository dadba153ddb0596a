# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""/usr/local/bin/healthcheck of every sample image: exit 0 when healthy, 1 when not.

HEALTHCHECK_URL set (predictor, device-manager): healthy when GET answers 200.
Else (trainer): healthy while $TRAINER_MODELS_DIR/current.json is younger than
TRAINER_HEALTH_MAX_AGE seconds (default: 3 training intervals, at least 60 s), or, before the
first checkpoint, while the container has run less than that.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys
import time

import edgeops_service as service


def url_healthy(url):
    status, dummy_payload, error = service.http_get_json(url, timeout=5.0)
    if status == 200:
        return True, "HTTP 200"
    return False, error or "HTTP %s" % status


def container_age():
    """Seconds since PID 1 (the service) started, from /proc (start time in clock ticks since boot)."""
    with open("/proc/1/stat") as handle:
        start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as handle:
        uptime = float(handle.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def checkpoint_healthy(now=None):
    now = time.time() if now is None else now
    interval = service.env_int("TRAINER_INTERVAL", 60, 1, 86400)
    max_age = service.env_int("TRAINER_HEALTH_MAX_AGE", max(3 * interval, 60), 1)
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
    except (service.SettingError, OSError, ValueError, IndexError) as err:
        healthy, detail = False, str(err)
    sys.stdout.write("%s: %s\n" % ("healthy" if healthy else "unhealthy", detail))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
