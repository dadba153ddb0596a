# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the rollout playbook: policy, plan (targets and waves), and per-device results."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import FleetError, assign_waves, load_rollout_policy


def _plain(value):
    """Templated data back to plain dict/list/str (tuples from the policy parser become lists)."""
    if isinstance(value, dict):
        return dict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def rollout_policy(data, overrides=None, source="rollout policy"):
    """The policy the fleet inventory published (``edgeops_rollout``, normalised) with playbook overrides, validated.

    The overrides are in the fleet file's form and only they are parsed; the published policy is taken as it is.
    The environment is the fleet's: an override may not change it (else `-e` could turn production into lab and
    waive the approval lock).
    """
    published = _plain(data or {})
    overrides = _plain(overrides or {})
    environment = published.get("environment", "production")
    if published and "environment" in overrides and overrides["environment"] != environment:
        raise AnsibleFilterError("%s: rollout_policy.environment: the environment comes from the fleet file (%s) and "
                                 "cannot be overridden" % (source, environment))
    try:
        if published and "wave_plan" not in published:
            # Written by hand in the fleet file's form (a static inventory's group_vars): parsed with the overrides.
            return _plain(load_rollout_policy(dict(published, **overrides), source=source))
        return _plain(load_rollout_policy(overrides, source=source, base=published or None))
    except FleetError as exc:
        raise AnsibleFilterError(str(exc))


def rollout_plan(hosts, hostvars, policy, release):
    """Targets -> {devices: {name: {site, wave, pinned, registry}}, waves: [...], canary_wave}.

    A device keeps the wave the fleet inventory gave it (edgeops_wave); devices from other inventories get one
    from the same stateless assignment. A device pinned to another release (edgeops_release) is left out.
    """
    devices, unassigned = {}, {}
    for name in hosts:
        hv = hostvars[name]
        pinned = hv.get("edgeops_release") or ""
        entry = {"site": str(hv.get("edgeops_site") or "default"),
                 "registry": str(hv.get("workloads_registry") or hv.get("registry_address") or ""),
                 "pinned": str(pinned) if pinned and pinned != release else ""}
        wave = hv.get("edgeops_wave")
        if isinstance(wave, int) and not isinstance(wave, bool):
            entry["wave"] = wave
        else:
            unassigned[name] = {"site": entry["site"], "tags": list(hv.get("edgeops_tags") or [])}
        devices[name] = entry
    if unassigned:
        parsed = dict(policy)
        parsed["waves"] = [("count", w) if isinstance(w, int) else ("share", float(str(w).rstrip("%")) / 100.0)
                           for w in policy["wave_plan"]]
        for name, wave in assign_waves({"devices": unassigned, "rollout": parsed}).items():
            devices[name]["wave"] = wave
    waves = sorted(set(d["wave"] for d in devices.values() if not d["pinned"]))
    plan_first = (policy.get("wave_plan") or [None])[0]
    canary = 0 if isinstance(plan_first, int) and not isinstance(plan_first, bool) else None
    sites = {}
    for name in sorted(devices):
        entry = devices[name]
        if not entry["pinned"]:
            sites.setdefault((entry["site"], entry["registry"]), name)
    return {"devices": devices, "waves": waves, "canary_wave": canary,
            "sites": [{"site": site, "registry": registry, "device": name}
                      for (site, registry), name in sorted(sites.items())]}


def rollout_schedule(plan, staged, batch_size):
    """The wave play's schedule: the staged devices in the order they switch and the batches they switch in.

    Each wave is cut into batches of at most ``batch_size`` devices, spread over the sites (round robin, sites and
    devices by name) so that a bad batch does not take one site down. Returns ``{hosts: [...] in switching order,
    sizes: [batch sizes] for the play's serial, steps: [{wave, batch, batches, devices}]}``; a play with these
    ``hosts`` and ``serial`` runs one step per batch and only its devices' tasks.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AnsibleFilterError("rollout_batch_size: expected a number of devices >= 1, got %r" % (batch_size,))
    staged = set(staged or [])
    devices = plan["devices"]
    hosts, sizes, steps = [], [], []
    for wave in plan["waves"]:
        by_site = {}
        for name in sorted(n for n, d in devices.items() if d["wave"] == wave and not d["pinned"] and n in staged):
            by_site.setdefault(devices[name]["site"], []).append(name)
        spread = []
        queues = [by_site[site] for site in sorted(by_site)]
        for index in range(max([len(q) for q in queues] or [0])):
            spread.extend(q[index] for q in queues if index < len(q))
        count = (len(spread) + batch_size - 1) // batch_size
        for index in range(count):
            batch = spread[index * batch_size:(index + 1) * batch_size]
            hosts.extend(batch)
            sizes.append(len(batch))
            steps.append({"wave": wave, "batch": index + 1, "batches": count, "devices": batch})
    return {"hosts": hosts, "sizes": sizes, "steps": steps}


def rollout_step(schedule, batch):
    """The schedule's step of a serial batch (``ansible_play_batch``: any of its devices still in the play)."""
    members = set(batch or [])
    for step in schedule["steps"]:
        if members & set(step["devices"]):
            return step
    raise AnsibleFilterError("rollout schedule: no step has the devices %s" % ", ".join(sorted(members)[:5]))


def rollout_rollback_hosts(run):
    """The devices the settle play rolls back: those the rollout switched, when it aborted under rollback_switched
    or a rollback was asked; else none. ``run`` is the rollout's state (``__rollout``)."""
    run = run or {}
    decision = run.get("decision")
    if decision == "rollback" or (decision == "abort" and (run.get("policy") or {}).get("rollback_switched", True)):
        return sorted(run.get("rollback") or {})
    return []


def rollout_wave_line(wave, plan):
    names = sorted(n for n, d in plan["devices"].items() if d["wave"] == wave and not d["pinned"])
    shown = ", ".join(names[:8]) + (" and %d more" % (len(names) - 8) if len(names) > 8 else "")
    return "wave %d%s: %d device(s): %s" % (wave, " (canary)" if wave == plan.get("canary_wave") else "",
                                            len(names), shown)


def rollout_collect(names, hostvars, variable, default=None, active=None, steps=None):
    """{device: hostvars[device][variable]} for the given devices; ``default`` where it is not set.

    With ``active`` (ansible_play_hosts), a device that dropped out of the play (unreachable) is reported
    ``unreachable``, keeping the reason and step its result recorded last. ``steps`` ([[variable, step], ...], in
    order) tells how far such a device got: the step of the last variable it has, set by a reachable task.
    """
    out = {}
    for name in names:
        host = hostvars[name] if name in hostvars else {}
        value = host.get(variable)
        entry = _plain(value) if value is not None else _plain(default)
        if active is not None and name not in active and isinstance(entry, dict):
            step = entry.get("step")
            for reached, label in steps or []:
                result = host.get(reached)
                if isinstance(result, dict) and not result.get("unreachable"):
                    step = label
            entry = dict(entry, outcome="unreachable", reason="unreachable (last step: %s)" % (step or "unknown"))
        out[name] = entry
    return out


class FilterModule(object):
    """Rollout filters."""

    def filters(self):
        return {"rollout_policy": rollout_policy, "rollout_plan": rollout_plan, "rollout_collect": rollout_collect,
                "rollout_wave_line": rollout_wave_line, "rollout_rollback_hosts": rollout_rollback_hosts,
                "rollout_schedule": rollout_schedule, "rollout_step": rollout_step}
