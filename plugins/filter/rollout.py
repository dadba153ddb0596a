# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the rollout playbook: policy, plan (targets and waves), and per-device results."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.module_utils import _rollout
from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import FleetError, assign_waves, load_rollout_policy
from ansible_collections.edgeops.fleet.plugins.plugin_utils._templated import plain as _plain


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


def rollout_failure_alerts(outcomes, release_file="", rollout_id="", workflow=None):
    return _rollout.failure_alerts(_plain(outcomes or {}), release_file or "", rollout_id or "", _plain(workflow or {}))


def rollout_wave_line(wave, plan):
    names = sorted(n for n, d in plan["devices"].items() if d["wave"] == wave and not d["pinned"])
    shown = ", ".join(names[:8]) + (" and %d more" % (len(names) - 8) if len(names) > 8 else "")
    return "wave %d%s: %d device(s): %s" % (wave, " (canary)" if wave == plan.get("canary_wave") else "",
                                            len(names), shown)


def _reached(result):
    """A registered result of a task that ran on a reachable device."""
    return isinstance(result, dict) and not result.get("unreachable") and not result.get("skipped")


def _dropped_out(names, active, out):
    """A device no longer in the play (``active`` given: ansible_play_hosts) is reported unreachable at its step."""
    if active is None:
        return out
    for name in names:
        if name not in active:
            step = out[name].get("step") or "unknown"
            out[name] = dict(out[name], outcome="unreachable", reason="unreachable (last step: %s)" % step)
    return out


def rollout_staged(names, hostvars, active=None, before="__rollout_before", staged="workloads_staged",
                   failed="__rollout_stage_failed"):
    """{device: stage outcome} from what the stage play registered on each device, read once on the controller.

    ``failed`` (set by the stage's rescue) wins; else a device that read its generation (``before``) and published
    a staged generation (``staged``, the workloads role's result) is staged; else it got as far as its last step.
    """
    out = {}
    for name in names:
        host = hostvars[name] if name in hostvars else {}
        refusal = _plain(host.get(failed))
        read = _plain(host.get(before))
        result = _plain(host.get(staged))
        if isinstance(refusal, dict):
            out[name] = refusal
        elif _reached(read) and isinstance(result, dict) and (active is None or name in active):
            out[name] = {"outcome": "staged", "step": "staged", "previous": read.get("confirmed"),
                         "generation": result.get("generation")}
        else:
            out[name] = {"outcome": "unreachable", "step": "stage" if _reached(read) else "read the running generation"}
            # Kept in the play (the stage's ignore_unreachable), so that a stage no device reached still closes the record.
            if isinstance(read, dict) and read.get("unreachable"):
                out[name]["reason"] = "unreachable (last step: read the running generation): %s" % str(read.get("msg", ""))[:200]
            elif _reached(read) and active is not None and name in active:
                out[name]["reason"] = "unreachable during the stage"
    return _dropped_out(names, active, out)


def rollout_switched(names, hostvars, active=None, switch="__rollout_switch", refused="__rollout_refused"):
    """{device: switch outcome} from what a batch of the wave play registered on each device.

    ``refused`` (set by the wave's rescue: the switch refused its arguments) wins; else the gated switch's result
    when it has an outcome; a device it could not reach is unreachable, with the connection's message.
    """
    out = {}
    for name in names:
        host = hostvars[name] if name in hostvars else {}
        refusal = _plain(host.get(refused))
        result = _plain(host.get(switch))
        if isinstance(refusal, dict):
            out[name] = refusal
        elif isinstance(result, dict) and "outcome" in result:
            out[name] = result
        elif isinstance(result, dict) and result.get("unreachable"):
            out[name] = {"outcome": "unreachable", "rolled_back": False, "reason": result.get("msg") or "unreachable"}
        else:
            out[name] = {"outcome": "unreachable"}
    return _dropped_out(names, active, out)


def rollout_final(names, hostvars, since, end="__rollout_end", rollback="__rollout_settle_rollback"):
    """{device: where it ended} for the report, from what the settle plays registered on each device.

    ``end`` is generation_info's result (read after a pending switch was confirmed or reverted), ``rollback`` the
    rollback's (only on the devices settle_rollback.yml rolled back). A device whose ``end`` is missing or skipped was
    not settled: an empty mapping. Incidents before ``since`` (the attempt's start) belong to earlier rollouts.
    """
    out = {}
    for name in names:
        host = hostvars[name] if name in hostvars else {}
        state = _plain(host.get(end))
        if not isinstance(state, dict) or state.get("skipped"):
            out[name] = {}
            continue
        back = _plain(host.get(rollback))
        back = back if isinstance(back, dict) else {"skipped": True}
        back_ok = not back.get("failed", False) and not back.get("unreachable", False)
        out[name] = {
            "reachable": not state.get("unreachable", False) and not state.get("failed", False),
            "current": state.get("current"),
            "pending": state.get("pending"),
            "rolled_back": back_ok and not back.get("skipped", False),
            "rollback_attempted": not back.get("skipped", False),
            "ok": back_ok,
            "reason": back.get("msg", ""),
            "incidents": [i for i in state.get("incidents") or []
                          if isinstance(i, dict) and str(i.get("time", "")) >= str(since)],
        }
    return out


class FilterModule(object):
    """Rollout filters."""

    def filters(self):
        return {"rollout_policy": rollout_policy, "rollout_plan": rollout_plan, "rollout_final": rollout_final, "rollout_staged": rollout_staged,
                "rollout_switched": rollout_switched,
                "rollout_wave_line": rollout_wave_line, "rollout_rollback_hosts": rollout_rollback_hosts,
                "rollout_schedule": rollout_schedule, "rollout_step": rollout_step,
                "rollout_failure_alerts": rollout_failure_alerts}
