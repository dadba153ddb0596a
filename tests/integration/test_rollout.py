# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged rollouts on a real lab (rollout_lab.py: a hub with registry and Alertmanager, four devices): the good path.

The tests run in order and share the lab: validation and the approval lock first, then good releases through every
wave, an A/B split, a network cut mid-wave (the device reverts by itself, the rollout pauses, then resumes), and a
whole rollback, which leaves every device on demo-1.1.0. Bad releases and the failure budget: test_rollout_faults.py,
next, on the same lab (they start from demo-1.1.0).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO
from rollout_lab import CANARY, DEVICES, WAVES, waived

AB_GROUP = ["site01-dev02", "site01-dev04"]
# The cut-off test's own policy: the victim reverts CUT_CONFIRM_TIMEOUT s after its switch, which the test waits
# for; short, but >= soak + 30 s as the policy requires, so the other device of the wave still confirms in time. The
# cut must land while the controller's session soaks the victim (a device lost then is unreachable: pause); one that
# lands after the soak fails the confirmation instead, like a release that blocks SSH (a failed device: the budget
# aborts). Noticing the switch took the test more than 15 s on a loaded machine once: the soak leaves room for that.
CUT_SOAK = 45
CUT_CONFIRM_TIMEOUT = 90


@pytest.fixture(scope="module")
def lab(rollout_lab):
    if not rollout_lab.fresh:  # another module switched its devices first: these tests start from none
        rollout_lab.up()
    rollout_lab.fresh = False
    rollout_lab.publish("demo-1.0.0", "demo-1.1.0")
    rollout_lab.tags = {d: ["ab-b"] for d in AB_GROUP}
    rollout_lab.write_fleet("production")
    return rollout_lab


def test_a_release_with_a_digest_missing_from_the_registry_stops_at_validation(lab):
    def unpublished(manifest):
        manifest["workloads"]["predictor"]["digest"] = "sha256:" + "0" * 64
    lab.derive("demo-1.1.0", "demo-1.1.0-unpublished", unpublished)
    run = lab.rollout("demo-1.1.0-unpublished")
    assert run.rc != 0
    assert "release demo-1.1.0-unpublished is not fully published" in run.out, run.out[-3000:]
    assert "edgeops/predictor@sha256:%s (workload predictor) is not in site01-hub:5000" % ("0" * 64) in run.out
    for device in DEVICES:  # no device touched: nothing staged anywhere
        assert lab.listing(device)["generations"] == [], device
        assert run.recap.get(device) is None, run.recap


def test_production_rollout_waits_for_the_approval_lock(lab):
    run = lab.rollout("demo-1.0.0")
    assert run.rc != 0 and "release demo-1.0.0 is not approved for production" in run.out, run.out[-3000:]
    waiver = lab.rollout("demo-1.0.0", *waived())
    assert waiver.rc != 0, waiver.out[-3000:]
    assert "approval_waived: cannot be true when rollout.environment is production" in waiver.out
    elsewhere = lab.rollout("demo-1.0.0", "-e", json.dumps({"rollout_policy": {"environment": "lab"}}))
    assert elsewhere.rc != 0, elsewhere.out[-3000:]
    assert "rollout_policy.environment: the environment comes from the fleet file (production)" in elsewhere.out
    for device in DEVICES:
        assert lab.listing(device)["generations"] == [], device
    approve = lab.playbook("playbooks/rollout_approve.yml", "-e", "rollout_release_file=%s" % lab.manifest("demo-1.0.0"),
                           "-e", "rollout_approver=alice")
    assert approve.rc == 0, approve.out[-3000:]


def test_a_good_release_goes_through_every_wave_then_changes_nothing(lab):
    run = lab.rollout("demo-1.0.0")
    assert run.rc == 0, run.out[-6000:]
    lab.assert_all_on("demo-1.0.0")
    record = lab.record("demo-1.0.0")
    assert record["status"] == "completed"
    assert record["approval"]["approver"] == "alice"
    assert [w["wave"] for w in record["waves"]] == [0, 1, 2]
    assert record["waves"][0]["devices"] == [CANARY]
    assert all(w["counts"]["confirmed"] == len(w["devices"]) for w in record["waves"])
    # Waves ran one after the other: every switch of wave N+1 after every confirmation of wave N.
    assert record["waves"][0]["finished"] <= record["waves"][1]["started"] <= record["waves"][1]["finished"] \
        <= record["waves"][2]["started"], record["waves"]
    assert "rollout demo-1.0.0 of release demo-1.0.0: completed" in run.out
    again = lab.rollout("demo-1.0.0")
    assert again.rc == 0, again.out[-4000:]
    for device in DEVICES:
        assert again.recap[device]["changed"] == 0, (device, again.recap)
    assert again.recap["localhost"]["changed"] == 0, again.recap


def test_two_releases_live_at_once_on_different_tags(lab):
    lab.write_fleet("lab")  # from here on the fleet is a lab one: its rollouts may waive the approval lock
    run = lab.rollout("demo-1.1.0", "-e", "rollout_targets=tag_ab_b", "-e", "rollout_id=demo-1.1.0-ab", *waived())
    assert run.rc == 0, run.out[-6000:]
    for device in DEVICES:
        assert lab.running_release(device)[0] == ("demo-1.1.0" if device in AB_GROUP else "demo-1.0.0"), device
    assert sorted(lab.record("demo-1.1.0-ab")["devices"]) == AB_GROUP


def test_a_rollout_refuses_batches_larger_than_forks_and_the_free_strategy(lab):
    before = [lab.listing(device)["generations"] for device in DEVICES]
    run = lab.rollout("demo-1.1.0", "-f", "2", "-e", "rollout_batch_size=3", *waived())
    assert run.rc != 0 and "rollout_batch_size: expected a number of devices from 1 to forks (2), got 3" in run.out, \
        run.out[-3000:]
    os.environ["ANSIBLE_STRATEGY"] = "free"
    try:
        run = lab.rollout("demo-1.1.0", *waived())
    finally:
        del os.environ["ANSIBLE_STRATEGY"]
    assert run.rc != 0 and "strategy free (ANSIBLE_STRATEGY or ansible.cfg [defaults] strategy)" in run.out, \
        run.out[-3000:]
    assert [lab.listing(device)["generations"] for device in DEVICES] == before  # refused before staging


def test_the_upgrade_reaches_every_device_in_one_wave_four_times_forks(lab):
    """One wave of all four devices with forks 1: it switches in four batches of one, one after the other (the
    budget decides after each); before batches, a wave larger than forks was refused."""
    lab.waves = ["100%"]
    lab.write_fleet("lab")
    try:
        run = lab.rollout("demo-1.1.0", "-f", "1", *waived())
    finally:
        lab.waves = WAVES
        lab.write_fleet("lab")
    assert run.rc == 0, run.out[-6000:]
    lab.assert_all_on("demo-1.1.0")
    record = lab.record("demo-1.1.0")
    # The A/B devices already ran it: switching them again changed nothing.
    assert all(record["devices"][d]["outcome"] == "confirmed" for d in DEVICES), record["devices"]
    batches = [(w["wave"], w.get("batch"), len(w["devices"])) for w in record["waves"]]
    assert batches == [(0, "1/4", 1), (0, "2/4", 1), (0, "3/4", 1), (0, "4/4", 1)], record["waves"]
    assert sorted(d for w in record["waves"] for d in w["devices"]) == DEVICES
    # One after the other: a batch starts after the previous one was judged.
    for before, after in zip(record["waves"], record["waves"][1:]):
        assert before["finished"] <= after["started"], record["waves"]
    assert "wave 0, batch 4 of 4 (1 device(s))" in run.out, run.out[-3000:]


def test_a_device_cut_off_mid_wave_reverts_by_itself_and_the_rollout_pauses_then_resumes(lab):
    record_before = lab.record("demo-1.0.0")
    victim = sorted(d for d, e in record_before["devices"].items() if e["wave"] == 1)[0]
    args = ["-e", "rollout_id=cut", "-e", "rollout_revert_wait=5"] + waived(
        unreachable="pause", soak=CUT_SOAK, confirm_timeout=CUT_CONFIRM_TIMEOUT)
    # The resume runs under the fleet file's (long) confirm timeout: the short one is what the cut is tested with.
    resume_args = ["-e", "rollout_id=cut", "-e", "rollout_action=resume"] + waived(unreachable="pause")
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", lab.inventory,
         "-i", lab.fleet_config, "-e", "@" + lab.vars_file, "playbooks/rollout.yml",
         "-e", "rollout_release_file=%s" % lab.manifest("demo-1.0.0")] + args,
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1"))
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # wait until the victim switched and is soaking
            if lab.listing(victim)["pending"] is not None:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the victim was never switched")
        switched = time.monotonic()
        # Management access gone: every SSH packet dropped, the live session included.
        cut = subprocess.run(
            ["docker", "exec", "-i", "%s-%s" % (lab.name, victim), "nft", "-f", "-"], capture_output=True, text=True,
            input="table inet labcut {\n chain input { type filter hook input priority -300; tcp dport 22 drop; }\n}\n",
            check=False)
        assert cut.returncode == 0, cut.stderr
        out = proc.communicate(timeout=900)[0]
    except BaseException:
        lab.dexec(victim, "nft", "delete", "table", "inet", "labcut")  # the tests after this one need the victim
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
    lab.outputs.append(out)
    try:
        check_cut_off(lab, victim, switched, proc.returncode, out)
    finally:
        lab.dexec(victim, "nft", "delete", "table", "inet", "labcut")  # management access back
    resumed = lab.rollout("demo-1.0.0", *resume_args)
    assert resumed.rc == 0, resumed.out[-6000:]
    assert lab.record("cut")["status"] == "completed"
    lab.assert_all_on("demo-1.0.0")


def check_cut_off(lab, victim, switched, rc, out):
    """The cut rollout paused at wave 1, the next wave never started, the victim reverted by itself."""
    assert rc != 0, out[-6000:]
    record = lab.record("cut")
    assert record["status"] == "paused", (
        "%s (a confirmation failed rather than an unreachable soak means the cut landed after the soak)"
        % record.get("reason"), record)
    assert "%s unreachable in wave 1 (unreachable: pause)" % victim in record["reason"]
    assert [w["wave"] for w in record["waves"]] == [0, 1]
    wave2 = [d for d, e in record["devices"].items() if e["wave"] == 2]
    for device in wave2:  # the next wave never started
        assert lab.running_release(device)[0] == "demo-1.1.0", device
    # The victim reverts by itself within its confirm timeout, without the controller.
    deadline = switched + CUT_CONFIRM_TIMEOUT + 30
    while time.monotonic() < deadline and lab.listing(victim)["pending"] is not None:
        time.sleep(1)
    running, state = lab.running_release(victim)
    assert running == "demo-1.1.0" and state["pending"] is None, state
    assert any(i["what"] == "deadman-revert" for i in state["incidents"]), state["incidents"]


def test_a_whole_rollout_rolls_back(lab):
    run = lab.rollout("demo-1.0.0", "-e", "rollout_id=cut", "-e", "rollout_action=rollback", *waived())
    assert run.rc == 0, run.out[-6000:]
    assert lab.record("cut")["status"] == "rolled-back"
    lab.assert_all_on("demo-1.1.0")


def test_no_secret_in_any_output_or_record(lab):
    lab.assert_no_secret_anywhere()
