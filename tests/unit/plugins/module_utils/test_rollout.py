# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout record: approval lock, attempts, the fleet-wide failure budget, rollback targets, report."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils import _rollout as ro

POLICY = {"wave_plan": [1, "50%", "100%"], "soak": 5, "failure_threshold": 10, "min_executed": 1,
          "unreachable": "fail", "rollback_switched": True, "confirm_timeout": 60, "environment": "lab",
          "approval_waived": True}
DEVICES = dict(("dev%02d" % n, {"site": "site01" if n < 6 else "site02", "wave": 0 if n == 1 else (1 if n < 6 else 2)})
               for n in range(1, 11))
T0 = "2026-11-24T10:00:00Z"


def started(policy=None, record=None, action="start", sha="a" * 64):
    return ro.start(record, action, "r2", "r2", "r2.yml", sha, dict(POLICY, **(policy or {})), DEVICES,
                    {"waived": True}, T0)


def staged(record, failed=()):
    results = dict((name, {"outcome": "stage-failed" if name in failed else "staged", "previous": 4, "generation": 5,
                           "reason": "pull failed" if name in failed else ""}) for name in DEVICES)
    ro.record_stage(record, results, T0)
    return record


def wave(record, number, failed=(), unreachable=()):
    names = [n for n, d in DEVICES.items() if d["wave"] == number]
    results = {}
    for name in names:
        if name in failed:
            results[name] = {"outcome": "failed", "reason": "health gate on the device: probe predict failed",
                             "switched": True, "rolled_back": True}
        elif name in unreachable:
            results[name] = {"outcome": "unreachable", "reason": "unreachable (last step: confirm)", "switched": True}
        else:
            results[name] = {"outcome": "confirmed", "switched": True}
    return ro.record_wave(record, number, results, T0, "2026-11-24T10:01:00Z")


def test_the_approval_lock():
    entry = ro.approval_entry("r2", "a" * 64, "alice", T0)
    assert ro.check_approval(entry, "r2", "a" * 64, "production", False, "x.json")["approver"] == "alice"
    with pytest.raises(ro.RolloutError, match="release r2 is not approved for production"):
        ro.check_approval(None, "r2", "a" * 64, "production", False, "x.json")
    with pytest.raises(ro.RolloutError, match="the manifest changed after approval"):
        ro.check_approval(entry, "r2", "b" * 64, "production", False, "x.json")
    with pytest.raises(ro.RolloutError, match="cannot be waived in the production environment"):
        ro.check_approval(None, "r2", "a" * 64, "production", True, "x.json")
    assert ro.check_approval(None, "r2", "a" * 64, "lab", True, "x.json")["waived"] is True
    with pytest.raises(ro.RolloutError, match="approver"):
        ro.approval_entry("r2", "a" * 64, " ", T0)


def test_the_approval_of_an_awx_workflow_needs_the_workflow_job_that_started_this_one():
    awx = {"workflow_job_id": "4711", "workflow_job_name": "edgeops.fleet rollout with approval", "launched_by": "alice",
           "checked_sha256": "a" * 64}
    approval = ro.awx_workflow_approval(awx, "r2", "production", "a" * 64)
    assert approval == {"waived": False, "via": "awx-workflow", "workflow_job_id": 4711, "manifest_sha256": "a" * 64,
                        "workflow_job_name": "edgeops.fleet rollout with approval",
                        "approver": "approval node of AWX workflow job 4711", "launched_by": "alice",
                        "environment": "production"}
    for given, said in [({}, "is not set"), ({"workflow_job_id": ""}, "is not set"), (None, "is not set"),
                        ({"workflow_job_id": "12; rm"}, "not a job id: '12; rm'"), ({"workflow_job_id": "0"}, "not a job id")]:
        with pytest.raises(ro.RolloutError, match="release r2 may go to production only from an AWX workflow") as err:
            ro.awx_workflow_approval(given, "r2", "production")
        assert said in str(err.value)
    # Bound to the manifest the check node checked (and the approver read).
    with pytest.raises(ro.RolloutError, match=r"the release manifest changed after the workflow's check node \(sha256 aaaaaaaaaaaa, now bbbbbbbbbbbb\)"):
        ro.awx_workflow_approval(awx, "r2", "production", "b" * 64)
    with pytest.raises(ro.RolloutError, match="the workflow's check node handed no checked manifest"):
        ro.awx_workflow_approval(dict(awx, checked_sha256=""), "r2", "production", "a" * 64)


def test_a_good_rollout_continues_through_every_wave():
    record = staged(started())
    assert ro.decide_after_stage(record) == ("continue", "")
    for number in (0, 1, 2):
        assert wave(record, number) == ("continue", "")
    ro.finish(record, {}, T0)
    assert record["status"] == "completed"
    assert ro.counts(record) == {"confirmed": 10}
    assert record["incidents"] == []


def test_any_canary_failure_aborts_even_under_the_budget():
    record = staged(started({"failure_threshold": 100, "min_executed": 5}))
    decision, reason = wave(record, 0, failed=["dev01"])
    assert decision == "abort"
    assert reason == "canary dev01 failed: health gate on the device: probe predict failed"
    assert record["status"] == "aborted"
    assert [i["kind"] for i in record["incidents"]] == ["gate-failed", "rollback"]
    assert record["incidents"][0]["site"] == "site01" and record["incidents"][0]["release"] == "r2"


def test_the_budget_is_fleet_wide_not_per_wave():
    # 1 failure in wave 1 (1 of 5 executed = 20 % > 15 %) would abort; with min_executed 6 it waits for more devices.
    record = staged(started({"failure_threshold": 15, "min_executed": 6}))
    wave(record, 0)
    assert wave(record, 1, failed=["dev02"]) == ("continue", "")
    # Wave 2: one more failure: 2 of 10 executed = 20 % > 15 %, counted across waves.
    decision, reason = wave(record, 2, failed=["dev07"])
    assert decision == "abort"
    assert reason == "failure budget exceeded: 2 of 10 executed devices failed (20.0% > 15%)"
    record = staged(started({"failure_threshold": 25, "min_executed": 6}))
    wave(record, 0)
    wave(record, 1, failed=["dev02"])
    assert wave(record, 2, failed=["dev07"]) == ("continue", "")


def test_a_wave_in_batches_stops_at_the_batch_that_exceeds_the_budget():
    """Wave 2 (5 devices) in batches of 2: the budget decides after each batch, so a bad release stops before the
    rest of the wave switches; the record and its summary say which batch."""
    record = staged(started({"failure_threshold": 10}))
    wave(record, 0)
    wave(record, 1)
    first = {"dev06": {"outcome": "confirmed", "switched": True}, "dev07": {"outcome": "confirmed", "switched": True}}
    assert ro.record_wave(record, 2, first, T0, T0, batch="1/3") == ("continue", "")
    second = {"dev08": {"outcome": "failed", "reason": "probe predict failed", "switched": True, "rolled_back": True},
              "dev09": {"outcome": "confirmed", "switched": True}}
    decision, reason = ro.record_wave(record, 2, second, T0, T0, batch="2/3")
    assert decision == "abort" and reason == "failure budget exceeded: 1 of 9 executed devices failed (11.1% > 10%)"
    assert [(w["wave"], w.get("batch")) for w in record["waves"]] == [(0, None), (1, None), (2, "1/3"), (2, "2/3")]
    assert record["devices"]["dev10"]["outcome"] == "staged"  # the last batch never switched
    assert "  wave 2 batch 2/3: 2 device(s) in 0 s, confirmed 1, failed 1 -> abort" in ro.summary(record)
    # Nothing to wait for: the failed device's own switch rolled it back.
    assert ro.away(second) == []


def test_away_is_what_failed_or_was_lost_without_its_switch_rolling_it_back():
    results = {"ok": {"outcome": "confirmed"}, "back": {"outcome": "failed", "rolled_back": True},
               "stuck": {"outcome": "failed", "rolled_back": False}, "cut": {"outcome": "unreachable"},
               "silent": {}}
    assert ro.away(results) == ["cut", "silent", "stuck"]


def test_unreachable_devices_count_or_pause_per_policy():
    record = staged(started({"failure_threshold": 15}))
    wave(record, 0)
    assert wave(record, 1, unreachable=["dev03"])[0] == "abort"
    record = staged(started({"unreachable": "pause"}))
    wave(record, 0)
    decision, reason = wave(record, 1, unreachable=["dev03"])
    assert decision == "pause" and reason == "paused: dev03 unreachable in wave 1 (unreachable: pause)"
    assert record["status"] == "paused"
    # With `pause`, unreachable devices do not count against the budget.
    assert ro.budget(record) == (0, 5)


def test_staging_failures_can_abort_before_any_switch():
    record = staged(started({"failure_threshold": 10}), failed=["dev04", "dev08"])
    decision, reason = ro.decide_after_stage(record)
    assert decision == "abort" and reason.startswith("failure budget exceeded while staging: 2 of 10")
    # One device that cannot stage among ten is 10 %: not above the threshold.
    assert ro.decide_after_stage(staged(started({"failure_threshold": 10}), failed=["dev04"]))[0] == "continue"
    assert [i["kind"] for i in record["incidents"]] == ["stage-failed", "stage-failed"]


def test_abort_rolls_back_only_what_this_rollout_switched_and_kept():
    record = staged(started({"failure_threshold": 15}))
    wave(record, 0)
    wave(record, 1, failed=["dev02", "dev03"])
    assert record["status"] == "aborted"
    # dev01, dev04, dev05 run r2 confirmed; dev02/dev03 were already rolled back by their gate; wave 2 untouched.
    assert ro.rollback_targets(record, ("confirmed",)) == {"dev01": 4, "dev04": 4, "dev05": 4}
    ro.finish(record, {"dev01": {"rolled_back": True, "current": 4}, "dev04": {"rolled_back": True},
                       "dev05": {"rolled_back": True}}, T0)
    assert record["status"] == "aborted"
    assert ro.counts(record) == {"rolled-back": 3, "failed": 2, "staged": 5}


def test_a_paused_rollout_must_be_resumed_or_rolled_back_and_keeps_what_ran_before():
    record = staged(started({"unreachable": "pause"}))
    wave(record, 0)
    wave(record, 1, unreachable=["dev03"])
    with pytest.raises(ro.RolloutError, match="is paused .* resume it"):
        started(record=record)
    with pytest.raises(ro.RolloutError, match="manifest of release r2 changed"):
        started(record=record, action="resume", sha="b" * 64)
    record = started(record=record, action="resume")
    assert record["devices"]["dev01"]["outcome"] == "confirmed"
    assert record["devices"]["dev03"]["outcome"] == "pending"
    assert len(record["attempts"]) == 2
    # The resume's staging sees dev01 on the new generation: what it ran before is kept for a rollback.
    ro.record_stage(record, {"dev01": {"outcome": "staged", "previous": 5, "generation": 5}}, T0)
    assert record["devices"]["dev01"]["previous"] == 4
    whole = ro.rollback_targets(record)
    assert sorted(whole) == ["dev01", "dev02", "dev03", "dev04", "dev05"] and set(whole.values()) == {4}
    ro.finish_rollback(record, dict((n, {"ok": True}) for n in whole), T0)
    assert record["status"] == "rolled-back" and ro.rollback_targets(record) == {}


def test_a_rollout_of_another_release_under_the_same_id_is_refused():
    record = started()
    with pytest.raises(ro.RolloutError, match="is a rollout of release r2, not r3"):
        ro.start(record, "start", "r2", "r3", "r3.yml", "c" * 64, POLICY, DEVICES, None, T0)
    with pytest.raises(ro.RolloutError, match="there is no rollout r2 to resume"):
        started(action="resume")


def test_the_dead_man_revert_reported_by_a_device_becomes_an_incident():
    record = staged(started({"unreachable": "pause"}))
    wave(record, 0)
    wave(record, 1, unreachable=["dev03"])
    ro.finish(record, {"dev03": {"current": 4, "incidents": [
        {"what": "deadman-revert", "reason": "switch to generation 5 was not confirmed"},
        {"what": "rollback", "reason": "operator rollback"}]}}, T0)
    kinds = [i["kind"] for i in record["incidents"] if i["device"] == "dev03"]
    assert kinds == ["unreachable", "deadman-revert"]
    alerts = ro.alerts(record)
    assert alerts[-1]["labels"] == {"alertname": "EdgeopsRolloutIncident", "severity": "critical", "site": "site01",
                                    "device": "dev03", "release": "r2", "reason": "deadman-revert", "rollout": "r2"}


def test_a_tag_group_without_wave_0_has_its_first_wave_as_canary():
    record = ro.start(None, "start", "ab", "r2", "r2.yml", "a" * 64, POLICY, {"dev07": DEVICES["dev07"]}, None, T0)
    staged_one = {"dev07": {"outcome": "staged", "previous": 4, "generation": 5}}
    ro.record_stage(record, staged_one, T0)
    decision, reason = ro.record_wave(record, 2, {"dev07": {"outcome": "failed", "reason": "x"}}, T0, T0)
    assert (decision, reason) == ("abort", "canary dev07 failed: x")


def test_a_failed_rollback_after_an_abort_is_an_incident():
    record = staged(started())
    wave(record, 0, failed=["dev01"])
    ro.finish(record, {"dev01": {"rollback_attempted": True, "rolled_back": False, "reason": "unreachable"}}, T0)
    assert record["incidents"][-1]["kind"] == "rollback-failed"
    assert record["devices"]["dev01"]["reason"] == "rollback failed: unreachable"


def test_summary_table_and_stats_key():
    record = staged(started())
    wave(record, 0, failed=["dev01"])
    ro.finish(record, {}, T0)
    lines = ro.summary(record)
    assert lines[0] == "rollout r2 of release r2: aborted - canary dev01 failed: health gate on the device: probe predict failed"
    assert lines[1].startswith("  wave 0: 1 device(s) in 60 s, failed 1 -> abort")
    assert any(line.split()[:4] == ["dev01", "site01", "0", "failed"] for line in lines[2:])
    assert ro.stats_key("demo-1.1.0+ab") == "edgeops_rollout_demo_1_1_0_ab"
    with pytest.raises(ro.RolloutError):
        ro.check_id("../etc")


# ---- the rollout_record module: bad input refused by name, before the record is written --------------------

def run_record(capsys, tmp_path, **args):
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.edgeops.fleet.plugins.modules import rollout_record

    manifest = tmp_path / "r2.yml"
    manifest.write_text("release: r2\n")
    args = dict({"manifest": str(manifest), "release": "r2", "record_dir": str(tmp_path / "records"),
                 "approvals_dir": str(tmp_path / "approvals")}, **args)
    with patch_module_args(args), pytest.raises(SystemExit):
        rollout_record.main()
    return json.loads(capsys.readouterr().out)


def test_a_record_that_is_no_json_is_named_instead_of_a_traceback(capsys, tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "r2.json").write_text('{"id": "r2", "devi')  # cut off by a full disk
    result = run_record(capsys, tmp_path, step="wave", wave=0, results={})
    assert result["failed"] and result["msg"].startswith("%s is not valid JSON" % (tmp_path / "records" / "r2.json"))


def test_results_of_a_device_the_rollout_does_not_target_are_refused_and_nothing_is_written(capsys, tmp_path):
    record = staged(started())
    path = tmp_path / "records" / "r2.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    before = path.read_text()
    result = run_record(capsys, tmp_path, step="wave", wave=0,
                        results={"dev01": {"outcome": "confirmed"}, "dev99": {"outcome": "confirmed"}})
    assert result["failed"] and result["msg"] == "results: dev99 is not a target of rollout r2"
    assert path.read_text() == before


def test_a_release_id_that_is_no_file_name_is_refused_by_name(capsys, tmp_path):
    result = run_record(capsys, tmp_path, step="start", release="../r2", rollout_id="r2",
                        policy=POLICY, devices=DEVICES, approval_waived=True, environment="lab")
    assert result["failed"] and result["msg"].startswith("release must be letters, digits")


def test_the_devices_lock_refuses_a_second_rollout_on_a_shared_device_and_names_the_holder():
    other = ro.lock_entry("other", "demo-0.9", ["a1", "b1"], {"controller": "ctl-b", "user": "bob"}, "t1", T0)
    assert ro.lock_conflicts([other], "mine", ["a2", "b2"]) == []  # disjoint: an A/B arm on other devices
    conflicts = ro.lock_conflicts([other], "mine", ["a1", "a2"])
    assert conflicts == [(other, ["a1"])]
    message = str(ro.lock_refusal(conflicts, "/state/running"))
    assert "rollout other of demo-0.9 (running since %s, controller ctl-b, user bob) holds a1" % T0 in message
    assert "rollout_break_lock=other" in message
    # This rollout driven by another controller is refused; its own paused lock is taken back (resume, rollback).
    mine = ro.lock_entry("mine", "demo-1.0", ["a1"], {}, "t2", T0)
    assert ro.lock_conflicts([mine], "mine", ["a1"]) == [(mine, [])]
    assert ro.lock_conflicts([dict(mine, state="paused", token="")], "mine", ["a1"]) == []
    # A paused rollout of another id still holds its devices.
    assert ro.lock_conflicts([dict(other, state="paused")], "mine", ["b1"]) == [(dict(other, state="paused"), ["b1"])]


def test_a_later_step_stops_when_the_lock_is_no_longer_its_own():
    entry = ro.lock_entry("r", "demo-1.0", ["a1"], {"controller": "ctl-a"}, "t1", T0)
    ro.check_lock_owner(entry, "r", "t1", "/state/running/r.json")
    with pytest.raises(ro.RolloutError, match="no longer this run's: now held by rollout r of demo-1.0"):
        ro.check_lock_owner(dict(entry, token="t9"), "r", "t1", "/state/running/r.json")
    with pytest.raises(ro.RolloutError, match="no longer this run's: it was broken"):
        ro.check_lock_owner(None, "r", "t1", "/state/running/r.json")


def test_a_rollout_that_leaves_devices_on_its_release_keeps_them():
    switched = {"switched": True, "previous": 1, "generation": 2}
    assert ro.keeps_devices({"status": "paused", "devices": {}})
    assert ro.keeps_devices({"status": "aborted", "devices": {"a1": dict(switched, outcome="confirmed")}})
    assert not ro.keeps_devices({"status": "aborted", "devices": {"a1": dict(switched, outcome="rolled-back",
                                                                             generation=1)}})
    assert not ro.keeps_devices({"status": "completed", "devices": {"a1": dict(switched, outcome="confirmed")}})


def test_a_failed_workflow_alerts_once_per_rollout_that_did_not_complete_or_once_for_the_workflow():
    outcomes = {
        "edgeops_rollout_light_1_1_0": {"status": "aborted", "release": "light-1.1.0", "reason": "canary failed",
                                        "counts": {"rolled-back": 1, "staged": 9},
                                        "record": "s3://state/fleet/rollouts/light-1.1.0.json"},
        "edgeops_rollout_other": {"status": "completed", "release": "demo-1", "reason": "", "counts": {}, "record": ""},
    }
    alerts = ro.failure_alerts(outcomes, "releases/light-1.1.0.yml", "", {"job_id": 77, "name": "wf"}, now=T0)
    assert [a["labels"] for a in alerts] == [{"alertname": "EdgeopsRolloutFailed", "severity": "critical",
                                              "rollout": "light-1.1.0", "release": "light-1.1.0", "status": "aborted"}]
    assert alerts[0]["annotations"]["description"] == ("canary failed. Devices: 1 rolled-back, 9 staged. Record: "
                                                       "s3://state/fleet/rollouts/light-1.1.0.json. Run by AWX workflow job 77 (wf).")
    assert alerts[0]["startsAt"] == T0
    # Nothing handed on (the check failed, the lock was refused): one alert for the workflow, named by the release file.
    for nothing in ({}, {"edgeops_rollout_other": outcomes["edgeops_rollout_other"]}):
        alerts = ro.failure_alerts(nothing, "releases/light-1.2.0.yaml", "", {}, now=T0)
        assert [a["labels"]["status"] for a in alerts] == ["not-started"]
        assert alerts[0]["labels"]["release"] == alerts[0]["labels"]["rollout"] == "light-1.2.0"
        assert alerts[0]["annotations"]["description"].startswith("the rollout workflow failed and no rollout outcome")
