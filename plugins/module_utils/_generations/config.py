# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent: its version, where the agent role installs it, and its settings file."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re

from .errors import GenerationError

# Bumped whenever the device-side behaviour changes; the module refuses to switch a device whose
# installed agent (the dead-man and boot units run it) is of another version.
# 2: the agent is this package (probes of the health gate, one commit-confirmed timer), not one file.
# 3: metrics for node exporter's textfile collector; monitor units in every health run (the monitor rule).
# 4: VMs of a release: overlays of checksummed base images, NoCloud seeds, data disks, DNATed ports, budget.
AGENT_VERSION = "4"

AGENT_CONFIG = "/etc/edgeops/agent.json"
AGENT_PROGRAM = "/usr/local/sbin/edgeops-gen"
# roles/agent copies this package here, whole; edgeops-gen imports edgeops_generations.cli.
AGENT_LIB = "/usr/local/lib/edgeops/edgeops_generations"
DEFAULT_CONFIG = {
    "state_dir": "/var/lib/edgeops",
    "compose_project": "edgeops",
    "boot_failure_limit": 3,
    "activation_timeout": 180,
    # Node exporter's textfile directory (Debian's default); nothing is written where it does not exist.
    "metrics_dir": "/var/lib/prometheus/node-exporter",
    # systemd units that watch the device (its monitor): each one inactive fails every health run, the gate of a
    # switch included, so a switch that kills the monitor rolls back by itself.
    "monitor_units": [],
    # The VM host edgeops.fleet.vms describes (budget, image and disk directories, networks); absent: no VMs.
    "vms_config": "/etc/edgeops/vms.json",
    # Where PCI devices are looked up before a VM takes one (a test points it at a fake tree).
    "sysfs": "/sys",
}


def load_config(path=AGENT_CONFIG):
    """The agent's settings (written by the agent role); defaults when the file is absent."""
    config = dict(DEFAULT_CONFIG)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (IOError, OSError) as exc:
        if exc.errno != errno.ENOENT:
            raise GenerationError("cannot read %s: %s" % (path, exc))
        return config
    except ValueError as exc:
        raise GenerationError("%s is not valid JSON: %s" % (path, exc))
    unknown = sorted(set(data) - set(DEFAULT_CONFIG))
    if unknown:
        raise GenerationError("%s: unknown key(s) %s" % (path, ", ".join(unknown)))
    config.update(data)
    units = config["monitor_units"]
    if not isinstance(units, list) or not all(isinstance(unit, str) and unit.strip() for unit in units):
        raise GenerationError("%s: monitor_units must be a list of systemd unit names, got %r" % (path, units))
    if not isinstance(config["metrics_dir"], str):
        raise GenerationError("%s: metrics_dir must be a path (empty: no metrics), got %r" % (path, config["metrics_dir"]))
    return config


def installed_agent_version(program=AGENT_PROGRAM, lib=AGENT_LIB):
    """AGENT_VERSION of the package the installed ``edgeops-gen`` imports, or None."""
    source = os.path.join(lib, "config.py")
    if not os.path.exists(program) or not os.path.exists(source):
        return None
    with open(source) as handle:
        match = re.search(r'^AGENT_VERSION = "([^"]+)"', handle.read(), re.M)
    return match.group(1) if match else None
