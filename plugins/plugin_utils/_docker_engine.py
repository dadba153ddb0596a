# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker Engine settings of an edge device: daemon.json built from the docker_engine role's variables.

Pure functions (no I/O), shared by the role's filter and the unit tests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# Keys the role owns; a key in docker_engine_daemon_options that collides with one of these is refused,
# so a device's daemon.json has one source of truth per setting.
OWNED_KEYS = ("data-root", "live-restore", "log-driver", "log-opts", "default-ulimits", "registry-mirrors",
              "runtimes")
_SIZE_RE = re.compile(r"^[1-9][0-9]*[kmg]$")
_ULIMIT_NAME_RE = re.compile(r"^[a-z_]+$")


class DockerEngineConfigError(ValueError):
    """A docker_engine_* variable has a value the role cannot turn into daemon.json."""


def _fail(key, message):
    raise DockerEngineConfigError("%s: %s" % (key, message))


def daemon_config(data_root="/var/lib/docker", live_restore=True, log_driver="json-file", log_max_size="10m",
                  log_max_file=3, default_ulimits=None, registry_mirrors=None, nvidia=False, extra=None):
    """Return the daemon.json mapping for the given role variables (raises DockerEngineConfigError)."""
    # bool("false") is True: the role converts its switches, anything else is refused here.
    for key, value in (("docker_engine_live_restore", live_restore), ("docker_engine_nvidia", nvidia)):
        if not isinstance(value, bool):
            _fail(key, "must be true or false, got %r" % (value,))
    if not isinstance(data_root, str) or not data_root.startswith("/"):
        _fail("docker_engine_data_root", "must be an absolute path, got %r" % (data_root,))
    if log_driver not in ("json-file", "local"):
        _fail("docker_engine_log_driver", "must be json-file or local (drivers that rotate on the device), got %r"
              % (log_driver,))
    if not isinstance(log_max_size, str) or not _SIZE_RE.match(log_max_size):
        _fail("docker_engine_log_max_size", "must be a size such as 10m, got %r" % (log_max_size,))
    try:
        max_file = int(log_max_file)
    except (TypeError, ValueError):
        max_file = 0
    if max_file < 1 or isinstance(log_max_file, bool):
        _fail("docker_engine_log_max_file", "must be an integer >= 1, got %r" % (log_max_file,))
    config = {
        "data-root": data_root,
        "live-restore": live_restore,
        "log-driver": log_driver,
        "log-opts": {"max-size": log_max_size, "max-file": str(max_file)},
    }
    if log_driver == "json-file":
        config["log-opts"]["compress"] = "true"
    ulimits = {}
    for name, limit in sorted((default_ulimits or {}).items()):
        where = "docker_engine_default_ulimits.%s" % name
        if not _ULIMIT_NAME_RE.match(str(name)):
            _fail(where, "is not a ulimit name")
        if not isinstance(limit, dict) or set(limit) != {"soft", "hard"}:
            _fail(where, "must be a mapping with exactly the keys soft and hard")
        soft, hard = limit["soft"], limit["hard"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= -1 for v in (soft, hard)):
            _fail(where, "soft and hard must be integers (-1 for unlimited)")
        if hard != -1 and (soft == -1 or soft > hard):
            _fail(where, "soft (%s) must not exceed hard (%s)" % (soft, hard))
        ulimits[name] = {"Name": name, "Soft": soft, "Hard": hard}
    if ulimits:
        config["default-ulimits"] = ulimits
    mirrors = list(registry_mirrors or [])
    for index, url in enumerate(mirrors):
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+/?$", url):
            _fail("docker_engine_registry_mirrors[%d]" % index, "must be a URL such as https://site01-hub:5000, got %r"
                  % (url,))
    if mirrors:
        config["registry-mirrors"] = mirrors
    if nvidia:
        config["runtimes"] = {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}
    for key, value in sorted((extra or {}).items()):
        if key in OWNED_KEYS:
            _fail("docker_engine_daemon_options.%s" % key, "is set by its own docker_engine_* variable; use that")
        config[key] = value
    return config
