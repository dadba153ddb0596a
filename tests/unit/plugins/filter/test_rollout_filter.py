# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout playbook's filters (plugins/filter/rollout.py): policy, plan, images, results."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.filter import rollout as f
from ansible_collections.edgeops.fleet.plugins.module_utils import _rollout as ro


def published(**rollout):
    """The policy as the fleet inventory publishes it (edgeops_rollout)."""
    return f.rollout_policy({}, dict(rollout, environment=rollout.get("environment", "lab")))


def test_policy_defaults_and_overrides():
    policy = f.rollout_policy(published(waves=[1, "50%", "100%"], soak=20), {"soak": 5})
    assert policy["soak"] == 5 and policy["wave_plan"] == [1, "50%", "100%"]
    assert policy["environment"] == "lab" and policy["confirm_timeout"] >= 15


def test_policy_keeps_a_published_site_cap():
    policy = f.rollout_policy(published(site_cap="25%"), {"soak": 1})
    assert policy["site_cap"] == 0.25


def test_policy_in_the_fleet_files_form_is_parsed_with_the_overrides():
    policy = f.rollout_policy({"waves": [2, "100%"], "environment": "lab", "soak": 7}, {"soak": 3})
    assert policy["wave_plan"] == [2, "100%"] and policy["soak"] == 3 and policy["environment"] == "lab"


def test_overrides_are_validated_against_the_published_policy():
    base = published(waves=[1, "100%"], failure_threshold=20)
    policy = f.rollout_policy(base, {"waves": ["50%", "100%"]})
    assert policy["waves"] == [["share", 0.5], ["share", 1.0]] and policy["failure_threshold"] == 20
    with pytest.raises(AnsibleFilterError, match=r"rollout\.waves"):
        f.rollout_policy(base, {"waves": []})


def test_policy_refuses_a_changed_environment():
    with pytest.raises(AnsibleFilterError, match="rollout_policy.environment: the environment comes from the fleet file"):
        f.rollout_policy(published(), {"environment": "production"})


def test_policy_error_names_the_source_and_key():
    with pytest.raises(AnsibleFilterError, match=r"^my policy: .*rollout\.soak"):
        f.rollout_policy({}, {"soak": -1, "environment": "lab"}, "my policy")


def hostvars():
    return {
        "a1": {"edgeops_site": "s1", "edgeops_wave": 0, "workloads_registry": "reg1:5000"},
        "a2": {"edgeops_site": "s1", "edgeops_wave": 1, "workloads_registry": "reg1:5000"},
        "b1": {"edgeops_site": "s2", "edgeops_wave": 1, "registry_address": "reg2:5000"},
        "b2": {"edgeops_site": "s2", "edgeops_wave": 2, "edgeops_release": "demo-0.9"},
        "c1": {"edgeops_site": "s3", "edgeops_release": "demo-1.1.0"},  # pinned to this very release: a target
    }


def test_plan_keeps_inventory_waves_assigns_others_and_leaves_pinned_devices_out():
    policy = published(waves=[1, "100%"])
    plan = f.rollout_plan(["a1", "a2", "b1", "b2", "c1"], hostvars(), policy, "demo-1.1.0")
    devices = plan["devices"]
    assert devices["a1"]["wave"] == 0 and devices["b1"]["wave"] == 1
    assert devices["b2"]["pinned"] == "demo-0.9" and devices["c1"]["pinned"] == ""
    assert isinstance(devices["c1"]["wave"], int)
    assert 2 not in plan["waves"]  # only b2, pinned, had wave 2
    assert plan["canary_wave"] == 0
    assert [s["site"] for s in plan["sites"]] == ["s1", "s2", "s3"]
    assert plan["sites"][0] == {"site": "s1", "registry": "reg1:5000", "device": "a1"}


def test_plan_without_a_count_first_has_no_canary():
    plan = f.rollout_plan(["a1"], hostvars(), published(waves=["50%", "100%"]), "r")
    assert plan["canary_wave"] is None


def test_wave_line():
    plan = f.rollout_plan(["a1", "a2", "b1", "b2"], hostvars(), published(waves=[1, "100%"]), "demo-1.1.0")
    assert f.rollout_wave_line(0, plan) == "wave 0 (canary): 1 device(s): a1"
    many = {"devices": dict(("d%02d" % i, {"wave": 1, "pinned": ""}) for i in range(10)), "canary_wave": 0}
    assert f.rollout_wave_line(1, many).endswith("d00, d01, d02, d03, d04, d05, d06, d07 and 2 more")


def test_staged_reads_each_device_from_what_it_registered():
    staged = {"generation": 7, "health_checks": []}
    hv = {"ok": {"__rollout_before": {"confirmed": 6, "current": 6}, "workloads_staged": staged},
          "refused": {"__rollout_before": {"confirmed": 6}, "__rollout_stage_failed": {
              "outcome": "stage-failed", "step": "stage", "previous": 6, "reason": "digest not found"}},
          "lost-staging": {"__rollout_before": {"confirmed": 2}},
          "lost-reading": {"__rollout_before": {"unreachable": True, "msg": "timeout"}},
          "stale": {"__rollout_before": {"confirmed": 1}, "workloads_staged": staged},  # from an earlier play
          "kept": {"__rollout_before": {"unreachable": True, "msg": "ssh: connect to host 192.0.2.1: timed out"}},
          "kept-staging": {"__rollout_before": {"confirmed": 2}},
          "never": {}}
    out = f.rollout_staged(sorted(hv), hv, active=["ok", "refused", "never", "kept", "kept-staging"])
    assert out["ok"] == {"outcome": "staged", "step": "staged", "previous": 6, "generation": 7}
    assert out["refused"]["outcome"] == "stage-failed" and out["refused"]["reason"] == "digest not found"
    assert out["lost-staging"] == {"outcome": "unreachable", "step": "stage", "reason": "unreachable (last step: stage)"}
    assert out["lost-reading"]["reason"] == "unreachable (last step: read the running generation)"
    assert out["stale"]["outcome"] == "unreachable"  # out of the play: its staged fact is not this run's
    assert out["never"] == {"outcome": "unreachable", "step": "read the running generation"}
    # Unreachable but kept in the play (the stage's ignore_unreachable): the connection's message is the reason.
    assert out["kept"] == {"outcome": "unreachable", "step": "read the running generation", "reason":
                           "unreachable (last step: read the running generation): ssh: connect to host 192.0.2.1: timed out"}
    assert out["kept-staging"] == {"outcome": "unreachable", "step": "stage", "reason": "unreachable during the stage"}


def test_switched_reads_each_device_from_its_switch_or_its_refusal():
    hv = {"ok": {"__rollout_switch": {"outcome": "confirmed", "switched": True, "started": "t0"}},
          "bad": {"__rollout_switch": {"outcome": "failed", "rolled_back": True, "reason": "gate"}},
          "cut": {"__rollout_switch": {"unreachable": True, "msg": "ssh: timeout"}},
          "refused": {"__rollout_switch": {"failed": True, "msg": "probes[0].port"},
                      "__rollout_refused": {"outcome": "failed", "switched": False, "reason": "refused: probes[0].port"}},
          "gone": {"__rollout_switch": {"outcome": "failed", "step": "soak"}},
          "none": {}}
    out = f.rollout_switched(sorted(hv), hv, active=["ok", "bad", "cut", "refused", "none"])
    assert out["ok"]["outcome"] == "confirmed" and out["ok"]["started"] == "t0"
    assert out["cut"] == {"outcome": "unreachable", "rolled_back": False, "reason": "ssh: timeout"}
    assert out["refused"]["reason"] == "refused: probes[0].port"
    assert out["gone"] == {"outcome": "unreachable", "step": "soak", "reason": "unreachable (last step: soak)"}
    assert out["none"] == {"outcome": "unreachable"}
    # Those the settle plays wait for (rollout_record returns them after the wave step): failed or lost, and not
    # rolled back by their own switch.
    assert ro.away(out) == ["cut", "gone", "none", "refused"]


def test_final_reads_where_each_device_ended_from_its_settle_results():
    since = "2026-12-03T10:00:00Z"
    old = {"time": "2026-12-01T08:00:00Z", "kind": "rollback"}
    new = {"time": "2026-12-03T10:05:00Z", "kind": "gate-failed"}
    end = {"changed": False, "current": 4, "pending": None, "incidents": [old, new, "not a mapping"]}
    hv = {
        "ok": {"__rollout_end": end},  # confirmed, not rolled back (no rollback registered)
        "back": {"__rollout_end": dict(end, current=3), "__rollout_settle_rollback": {"changed": True}},
        "refused": {"__rollout_end": end, "__rollout_settle_rollback": {"failed": True, "msg": "no generation 3"}},
        "away": {"__rollout_end": {"unreachable": True, "msg": "timeout"},
                 "__rollout_settle_rollback": {"unreachable": True, "msg": "timeout"}},
        "slow": {"__rollout_end": {"failed": True, "pending": 5, "current": 4}},
        "pinned": {"__rollout_end": {"skipped": True, "changed": False}},
        "never": {},
    }
    out = f.rollout_final(sorted(hv) + ["unknown"], hv, since)
    assert out["ok"] == {"reachable": True, "current": 4, "pending": None, "rolled_back": False,
                         "rollback_attempted": False, "ok": True, "reason": "", "incidents": [new]}
    assert out["back"]["rolled_back"] and out["back"]["rollback_attempted"] and out["back"]["current"] == 3
    assert out["refused"]["rolled_back"] is False and out["refused"]["ok"] is False
    assert out["refused"]["reason"] == "no generation 3" and out["refused"]["rollback_attempted"]
    assert out["away"]["reachable"] is False and out["away"]["ok"] is False and out["away"]["incidents"] == []
    assert out["slow"]["reachable"] is False and out["slow"]["pending"] == 5
    assert out["pinned"] == {} and out["never"] == {} and out["unknown"] == {}


def schedule_plan():
    """Wave 0: one canary; wave 1: 7 devices on sites a (4) and b (3); one device pinned, one not staged."""
    devices = {"a0": {"site": "a", "wave": 0, "pinned": ""}}
    for index in range(4):
        devices["a%d" % (index + 1)] = {"site": "a", "wave": 1, "pinned": ""}
    for index in range(3):
        devices["b%d" % (index + 1)] = {"site": "b", "wave": 1, "pinned": ""}
    devices["b9"] = {"site": "b", "wave": 1, "pinned": "r0"}
    devices["b8"] = {"site": "b", "wave": 1, "pinned": ""}
    return {"devices": devices, "waves": [0, 1], "canary_wave": 0}


def test_schedule_cuts_waves_in_batches_spread_over_the_sites():
    staged = ["a0", "a1", "a2", "a3", "a4", "b1", "b2", "b3", "b9"]  # b8 did not stage; b9 is pinned
    schedule = f.rollout_schedule(schedule_plan(), staged, 3)
    assert schedule["sizes"] == [1, 3, 3, 1]
    assert [(s["wave"], s["batch"], s["batches"], s["devices"]) for s in schedule["steps"]] == [
        (0, 1, 1, ["a0"]), (1, 1, 3, ["a1", "b1", "a2"]), (1, 2, 3, ["b2", "a3", "b3"]), (1, 3, 3, ["a4"])]
    assert schedule["hosts"] == ["a0", "a1", "b1", "a2", "b2", "a3", "b3", "a4"]
    # A batch as large as the wave: one batch per wave, as before batches existed.
    assert f.rollout_schedule(schedule_plan(), staged, 20)["sizes"] == [1, 7]


def test_step_finds_the_batch_from_any_device_still_in_the_play():
    schedule = f.rollout_schedule(schedule_plan(), ["a0", "a1", "a2", "a3", "a4", "b1", "b2", "b3"], 3)
    assert f.rollout_step(schedule, ["a3"]) == {"wave": 1, "batch": 2, "batches": 3, "devices": ["b2", "a3", "b3"]}
    with pytest.raises(AnsibleFilterError, match="no step has the devices x1"):
        f.rollout_step(schedule, ["x1"])


@pytest.mark.parametrize("size", [0, -1, True, "3", None])
def test_schedule_refuses_a_batch_size_that_is_not_a_count(size):
    with pytest.raises(AnsibleFilterError, match="rollout_batch_size: expected a number of devices >= 1"):
        f.rollout_schedule(schedule_plan(), ["a0"], size)


@pytest.mark.parametrize("decision, rollback_switched, expected", [
    ("abort", True, ["d1", "d2"]), ("abort", False, []), ("rollback", False, ["d1", "d2"]),
    ("continue", True, []), ("pause", True, []),
])
def test_rollback_hosts_follow_the_decision_and_the_policy(decision, rollback_switched, expected):
    run = {"decision": decision, "policy": {"rollback_switched": rollback_switched}, "rollback": {"d2": 4, "d1": 3}}
    assert f.rollout_rollback_hosts(run) == expected
    assert f.rollout_rollback_hosts(None) == []  # before the validate play set the state (syntax check)
