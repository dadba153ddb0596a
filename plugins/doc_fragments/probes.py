# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The one probe schema (module_utils/_generations/probe_schema.py), documented once: the probes of
    edgeops.fleet.health_check and the health checks of a release staged by edgeops.fleet.generation."""

    DOCUMENTATION = r"""
options: {}
notes:
  - "Probes: the option C(probes) of M(edgeops.fleet.health_check) and the
    C(health_checks) of a release staged by M(edgeops.fleet.generation) are the same mappings, validated by the
    same code on the controller and on the device. Unknown keys and missing or invalid values are refused before
    anything is probed or written, naming the list, the index (and name) and the key."
  - "Probes: every probe has C(name) (unique; required by M(edgeops.fleet.health_check), C(<type>-<index>) by
    default in a release), C(type) (required, one of C(http), C(tcp), C(container), C(systemd), C(metric),
    C(command)), C(retries) (attempts before a verdict, default 3), C(interval) (seconds between attempts and
    between soak samples, default 2) and C(timeout) (seconds per attempt, default 5)."
  - "Probes: C(http) - C(url) (required), C(status) (expected status, default 200), C(body) (a substring the body
    must contain), C(body_regex) (a Python regular expression that must match somewhere in the body).
    C(tcp) - C(port) (required), C(host) (default C(127.0.0.1)).
    C(container) - C(service), a compose service of the compose project; every container of the service must be
    running and, when it has a health check, healthy. C(systemd) - C(unit), which must be active."
  - "Probes: C(metric) - C(url) of a Prometheus text exposition endpoint, C(metric) (name), C(labels) (optional
    mapping; every label must match), C(op) (one of C(<), C(<=), C(>), C(>=), C(==), C(!=)) and C(threshold)
    (a number), all required but C(labels). Every sample that matches must satisfy C(value op threshold); no
    matching sample is a failure. C(command) - C(argv) (required, a list, run without a shell), C(exit_code)
    (default 0); the command must not change anything."
  - "Probes: a probe's verdict is C(passed), C(failed) (the target answered and the answer was wrong: connection
    refused, wrong status or body, metric out of bounds, container or unit not running, wrong exit code) or
    C(inconclusive) (the target could not be reached at all: connect timeout, no route to the host or network,
    name resolution failure). HTTP requests ignore proxy settings. A release's health checks pass only when
    every check passed."
"""
