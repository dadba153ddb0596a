# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device's generations as Prometheus metrics, for node exporter's textfile collector (pure, but the write).

``render`` turns what the state directory holds (pointers, manifests, state.json, the incident log, the last health
run) into the text exposition format; ``write`` puts it in place with a rename, so that node exporter never reads
half a file. Counters come from records that only grow (the incident log, state.json's counters), so they survive
reboots and agent restarts; every label value a counter can take is written from the start (as 0), since
Prometheus' ``increase()`` misses a series' first sample.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import os
import time

from .metrics import format_value
from .sysio import atomic_write

METRICS_FILE = "edgeops.prom"
# Incidents that mean the device left a generation for an earlier one (the `reason` of edgeops_rollbacks_total).
ROLLBACK_REASONS = ("health-rollback", "activation-failed", "deadman-revert", "boot-revert", "boot-rollback", "rollback")
SWITCH_RESULTS = ("activated", "rolled_back")

# name: (type, help). Documented for operators in roles/agent/README.md ("Metrics").
METRICS = (
    ("edgeops_agent_info", "gauge", "The generations agent's version (always 1)."),
    ("edgeops_generation_current", "gauge", "Generation the device should run (0: none)."),
    ("edgeops_generation_confirmed", "gauge", "Last generation the controller confirmed (0: none)."),
    ("edgeops_generation_newest", "gauge", "Newest kept generation: above current while a rollout has staged it."),
    ("edgeops_generation_pending", "gauge", "1 while a switch waits for its confirmation."),
    ("edgeops_release_info", "gauge", "Release and generation of the current and confirmed pointers (always 1)."),
    ("edgeops_switches_total", "counter", "Switches to a new generation, by result."),
    ("edgeops_rollbacks_total", "counter", "Returns to an earlier generation, by reason (the incident's kind)."),
    ("edgeops_deadman_reverts_total", "counter", "Switches reverted because the controller did not confirm them."),
    ("edgeops_incidents_total", "counter", "Incidents recorded in the device's incident log."),
    ("edgeops_last_incident_timestamp_seconds", "gauge", "Time of the last incident (0: none)."),
    ("edgeops_health_ok", "gauge", "1 if every health check of the last run passed."),
    ("edgeops_health_check_passed", "gauge", "Each health check of the last run: 1 passed, 0 failed."),
    ("edgeops_health_last_run_timestamp_seconds", "gauge", "When the health checks last ran."),
    ("edgeops_activation_last_timestamp_seconds", "gauge", "When the last activation ended."),
    ("edgeops_activation_last_duration_seconds", "gauge", "How long the last activation took."),
    ("edgeops_activation_last_success", "gauge", "1 if the last activation succeeded."),
    ("edgeops_metrics_timestamp_seconds", "gauge", "When this file was written."),
)


def _epoch(stamp):
    """Seconds since the epoch of an incident's ``time`` (UTC, as now_iso writes it); 0 if unreadable."""
    try:
        return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return 0


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name, value, labels=None):
    if labels:
        name = "%s{%s}" % (name, ",".join('%s="%s"' % (key, _escape(labels[key])) for key in sorted(labels)))
    return "%s %s" % (name, format_value(float(value)))


def snapshot(current, confirmed, newest, manifests, state, incidents, health, agent_version, now):
    """The facts ``render`` needs, as one dict (what a test builds by hand).

    ``manifests``: {generation: manifest or None} for current and confirmed; ``state``: state.json's content;
    ``incidents``: the incident records; ``health``: the last health run ({"at", "generation", "results"}) or None.
    """
    return {"current": current, "confirmed": confirmed, "newest": newest, "manifests": manifests, "state": state,
            "incidents": incidents, "health": health, "agent_version": agent_version, "now": now}


def render(facts):
    """Prometheus text exposition of one snapshot (see METRICS)."""
    lines_by_name = dict((name, []) for name, _type, _help in METRICS)

    def add(name, value, labels=None):
        lines_by_name[name].append(_sample(name, value, labels))

    current, confirmed = facts["current"], facts["confirmed"]
    state, incidents = facts["state"], facts["incidents"]
    add("edgeops_agent_info", 1, {"version": facts["agent_version"]})
    add("edgeops_generation_current", current or 0)
    add("edgeops_generation_confirmed", confirmed or 0)
    add("edgeops_generation_newest", facts["newest"] or 0)
    add("edgeops_generation_pending", 1 if current != confirmed else 0)
    for pointer, generation in (("current", current), ("confirmed", confirmed)):
        if generation is not None:
            release = (facts["manifests"].get(generation) or {}).get("release") or ""
            add("edgeops_release_info", 1, {"pointer": pointer, "release": release, "generation": generation})
    switches = state.get("counters", {}).get("switches", {})
    for result in SWITCH_RESULTS:
        add("edgeops_switches_total", switches.get(result, 0), {"result": result})
    kinds = {}
    for record in incidents:
        kinds[record.get("what")] = kinds.get(record.get("what"), 0) + 1
    for reason in ROLLBACK_REASONS:
        add("edgeops_rollbacks_total", kinds.get(reason, 0), {"reason": reason})
    add("edgeops_deadman_reverts_total", kinds.get("deadman-revert", 0))
    add("edgeops_incidents_total", len(incidents))
    add("edgeops_last_incident_timestamp_seconds", _epoch(incidents[-1].get("time")) if incidents else 0)
    health = facts["health"]
    # Only a run of the generation the device runs now says anything about it.
    if health and health.get("generation") == current and current is not None:
        add("edgeops_health_ok", 1 if all(r["passed"] for r in health["results"]) else 0)
        for result in health["results"]:
            add("edgeops_health_check_passed", 1 if result["passed"] else 0, {"check": result["name"]})
        add("edgeops_health_last_run_timestamp_seconds", health["at"])
    activation = state.get("last_activation")
    if activation:
        add("edgeops_activation_last_timestamp_seconds", activation["at"])
        add("edgeops_activation_last_duration_seconds", activation["seconds"])
        add("edgeops_activation_last_success", 1 if activation["ok"] else 0)
    add("edgeops_metrics_timestamp_seconds", facts["now"])
    out = []
    for name, kind, text in METRICS:
        if lines_by_name[name]:
            out.append("# HELP %s %s" % (name, text))
            out.append("# TYPE %s %s" % (name, kind))
            out.extend(lines_by_name[name])
    return "\n".join(out) + "\n"


def write(directory, text):
    """Put the file in node exporter's textfile directory with a rename; False when there is no such directory
    (no node exporter on this device: nothing to feed)."""
    if not directory or not os.path.isdir(directory):
        return False
    atomic_write(os.path.join(directory, METRICS_FILE), text, 0o644)
    return True
