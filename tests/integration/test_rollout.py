# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged rollouts on a real lab: one site, a hub (registry + Alertmanager) and five devices.

The inventory is the lab's (connection) plus the fleet inventory plugin over a fleet file written here
(sites, tags, waves [1, 50%, 100%]). Every rollout runs playbooks/rollout.yml as a user would. The tests run
in order and share the lab: validation and the approval lock first, then good releases through every wave,
an A/B split, each bad release stopped at the canary, a network cut mid-wave (pause, resume), and a whole
rollback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from conftest import REPO, ansible, lab_args

LAB = "edgeops-rollout"
PORT_BASE = 43300
HUB_REGISTRY_PORT = PORT_BASE + 90
HUB_ALERTMANAGER_PORT = PORT_BASE + 91
DEVICES = ["site01-dev%02d" % n for n in range(1, 6)]
CANARY = "site01-dev03"
AB_GROUP = ["site01-dev02", "site01-dev05"]
PACKAGES = ["docker.io", "docker-cli", "docker-compose", "nftables", "busybox-static", "docker-registry", "python3-passlib"]
RELEASES = ["demo-1.0.0", "demo-1.1.0", "demo-1.1.0-bad-crash", "demo-1.1.0-bad-unhealthy", "demo-1.1.0-bad-500",
            "demo-1.1.0-bad-firewall"]
# Test-only secrets (real use: ansible-vault); none may appear in any output or record.
SECRETS = {"pull": "pull-Rt5m2Qx8Lw", "push": "push-Hy3c6Vn1Zd", "token": "tok-Bq7Wd2Kp9Xs4"}
# Long enough for a switch, the soak and the gates on a loaded 2-CPU machine; a cut-off device reverts this
# long after its switch.
CONFIRM_TIMEOUT = 120


def dexec(device, *argv, timeout=120):
    return subprocess.run(["docker", "exec", "%s-%s" % (LAB, device)] + list(argv), capture_output=True, text=True,
                          timeout=timeout, check=False)


def listing(device):
    out = dexec(device, "edgeops-gen", "list")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def running_release(device):
    state = listing(device)
    by_id = dict((g["id"], g) for g in state["generations"])
    return by_id[state["current"]]["release"] if state["current"] else None, state


def ever_switched(device, release):
    """Whether the device ever ran the release (a generation of it that got past 'staged')."""
    return [g for g in listing(device)["generations"] if g["release"] == release and g.get("state") != "staged"]


class Lab(object):
    def __init__(self, tmp):
        self.tmp = tmp
        self.inventory = os.path.join(tmp, "hosts.yml")
        self.releases = os.path.join(tmp, "releases")
        self.records = os.path.join(tmp, "rollouts")
        self.approvals = os.path.join(tmp, "approvals")
        self.fleet_config = os.path.join(tmp, "edge.fleet.yml")
        self.vars_file = os.path.join(tmp, "vars.yml")
        self.lab_vars = lab_args(LAB, PORT_BASE, self.inventory, lab_devices_per_site=len(DEVICES),
                                 lab_image_packages=PACKAGES)
        self.outputs = []

    def write_vars(self):
        pki = os.path.join(self.tmp, "pki", "site01")
        data = {
            "edgeops_site": "site01",
            "registry_pki_dir": pki,
            "registry_address": "site01-hub:5000",
            "registry_users": [{"name": "publisher", "password": SECRETS["push"]},
                               {"name": "puller", "password": SECRETS["pull"]}],
            "registry_pull_user": "puller", "registry_pull_password": SECRETS["pull"],
            "registry_push_user": "publisher", "registry_push_password": SECRETS["push"],
            "registry_push_address": "127.0.0.1:%d" % HUB_REGISTRY_PORT,
            "workloads_secrets": {"dashboard_token": SECRETS["token"]},
            "docker_engine_default_ulimits": {"nofile": {"soft": 16384, "hard": 20000}},
            "rollout_test_releases": self.releases,
            "rollout_test_release_names": RELEASES,
            "rollout_record_dir": self.records,
            "rollout_approvals_dir": self.approvals,
            "rollout_registry_access": {"site01-hub:5000": "127.0.0.1:%d" % HUB_REGISTRY_PORT},
            "rollout_alertmanager_url": "http://127.0.0.1:%d" % HUB_ALERTMANAGER_PORT,
            # The controller's own probe of every device: its SSH port answers.
            "rollout_controller_probes": [{"name": "ssh-port", "type": "tcp", "host": "{{ ansible_host }}",
                                           "port": "{{ ansible_port }}", "retries": 3, "interval": 1}],
        }
        with open(self.vars_file, "w") as handle:
            yaml.safe_dump(data, handle)

    def write_fleet(self, environment):
        devices = {}
        for index, name in enumerate(DEVICES):
            tags = ["line-a"]
            if name == CANARY:
                tags.append("canary")
            if name in AB_GROUP:
                tags.append("ab-b")
            devices[name] = {"site": "site01", "address": "127.0.0.1", "port": PORT_BASE + index + 1, "tags": tags}
        fleet = {"version": 1,
                 "sites": {"site01": {"registry": "site01-hub:5000"}},
                 "devices": devices,
                 "rollout": {"waves": [1, "50%", "100%"], "salt": self.pick_salt(devices), "soak": 5,
                             "failure_threshold": 10, "min_executed": 1, "unreachable": "fail",
                             "confirm_timeout": CONFIRM_TIMEOUT, "environment": environment}}
        with open(os.path.join(self.tmp, "fleet.yml"), "w") as handle:
            yaml.safe_dump(fleet, handle)
        with open(self.fleet_config, "w") as handle:
            handle.write("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n")

    @staticmethod
    def pick_salt(devices):
        """A salt that puts two devices in each of the two percentage waves (each wave gets exercised)."""
        from ansible_collections.edgeops.fleet.plugins.module_utils._fleet import assign_waves, load_fleet
        for n in range(200):
            salt = "lab-%d" % n
            fleet = load_fleet({"sites": {"site01": {}}, "devices": devices,
                                "rollout": {"waves": [1, "50%", "100%"], "salt": salt}})
            waves = assign_waves(fleet)
            if sorted(waves.values()) == [0, 1, 1, 2, 2]:
                return salt
        raise AssertionError("no salt gives waves of 1, 2 and 2 devices")

    def playbook(self, playbook, *args):
        run = ansible("ansible-playbook", "-i", self.inventory, "-i", self.fleet_config, "-e", "@" + self.vars_file,
                      playbook, *args)
        self.outputs.append(run.out)
        return run

    def rollout(self, release, *args):
        return self.playbook("playbooks/rollout.yml", "-e", "rollout_release_file=%s/%s.yml" % (self.releases, release),
                             *args)

    def record(self, rollout_id):
        with open(os.path.join(self.records, rollout_id + ".json")) as handle:
            return json.load(handle)


def waived(**policy):
    return ["-e", json.dumps({"rollout_policy": dict(policy, approval_waived=True)})]


def alerts(release):
    url = "http://127.0.0.1:%d/api/v2/alerts?filter=%s" % (
        HUB_ALERTMANAGER_PORT, urllib.request.quote('release="%s"' % release))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return json.loads(opener.open(url, timeout=10).read().decode())


def assert_all_on(release, context=""):
    for device in DEVICES:
        running, state = running_release(device)
        assert running == release, (device, context, state)
        assert state["current"] == state["confirmed"] and state["pending"] is None, (device, state)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(str(tmp_path_factory.mktemp("rollout")))
    lab.write_vars()

    def down():
        return ansible("ansible-playbook", "playbooks/lab/down.yml", *lab.lab_vars)

    down()
    up = ansible("ansible-playbook", "playbooks/lab/up.yml", *lab.lab_vars)
    assert up.rc == 0, up.out[-3000:]
    lab.write_fleet("production")
    setup = lab.playbook("tests/integration/playbooks/rollout_setup.yml")
    assert setup.rc == 0, setup.out[-5000:]
    yield lab
    down()


def test_a_release_with_a_digest_missing_from_the_registry_stops_at_validation(lab):
    path = os.path.join(lab.releases, "demo-1.1.0-unpublished.yml")
    with open(os.path.join(lab.releases, "demo-1.1.0.yml")) as handle:
        manifest = yaml.safe_load(handle)
    manifest["release"] = "demo-1.1.0-unpublished"
    manifest["workloads"]["predictor"]["digest"] = "sha256:" + "0" * 64
    with open(path, "w") as handle:
        yaml.safe_dump(manifest, handle)
    run = lab.rollout("demo-1.1.0-unpublished")
    assert run.rc != 0
    assert "release demo-1.1.0-unpublished is not fully published" in run.out, run.out[-3000:]
    assert "edgeops/predictor@sha256:%s (workload predictor) is not in site01-hub:5000" % ("0" * 64) in run.out
    for device in DEVICES:  # no device touched: nothing staged anywhere
        assert listing(device)["generations"] == [], device
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
        assert listing(device)["generations"] == [], device
    approve = lab.playbook("playbooks/rollout_approve.yml", "-e", "rollout_release_file=%s/demo-1.0.0.yml" % lab.releases,
                           "-e", "rollout_approver=alice")
    assert approve.rc == 0, approve.out[-3000:]


def test_a_good_release_goes_through_every_wave_then_changes_nothing(lab):
    run = lab.rollout("demo-1.0.0")
    assert run.rc == 0, run.out[-6000:]
    assert_all_on("demo-1.0.0")
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
        assert running_release(device)[0] == ("demo-1.1.0" if device in AB_GROUP else "demo-1.0.0"), device
    assert sorted(lab.record("demo-1.1.0-ab")["devices"]) == AB_GROUP


def test_the_upgrade_reaches_every_device(lab):
    run = lab.rollout("demo-1.1.0", *waived())
    assert run.rc == 0, run.out[-6000:]
    assert_all_on("demo-1.1.0")
    record = lab.record("demo-1.1.0")
    # The A/B devices already ran it: switching them again changed nothing.
    assert all(record["devices"][d]["outcome"] == "confirmed" for d in DEVICES), record["devices"]


@pytest.mark.parametrize("release, reason", [
    ("demo-1.1.0-bad-crash", "switch: "),
    ("demo-1.1.0-bad-unhealthy", "health gate on the device: "),
    ("demo-1.1.0-bad-500", "predict"),
    ("demo-1.1.0-bad-firewall", "confirm: "),
])
def test_a_bad_release_stops_at_the_canary_and_everything_goes_back(lab, release, reason):
    # The unhealthy predictor fails its health check ~20 s after start: a 30 s soak catches it.
    policy = {"soak": 30} if "unhealthy" in release else {}
    run = lab.rollout(release, *waived(**policy))
    assert run.rc != 0, run.out[-6000:]
    record = lab.record(release)
    assert record["status"] == "aborted", record
    assert record["reason"].startswith("canary %s failed: " % CANARY), record["reason"]
    assert reason in record["reason"], record["reason"]
    assert "rollout %s aborted: canary %s failed" % (release, CANARY) in run.out
    assert [w["wave"] for w in record["waves"]] == [0]
    for device in DEVICES:
        if device != CANARY:
            assert not ever_switched(device, release), (device, listing(device))
    assert_all_on("demo-1.1.0", release)
    kinds = set(i["kind"] for i in record["incidents"] if i["device"] == CANARY)
    assert "gate-failed" in kinds, record["incidents"]
    if "firewall" in release:
        # New SSH logins were refused: the device reverted by itself (dead-man), as its own incident says.
        assert "deadman-revert" in kinds, record["incidents"]
    got = alerts(release)
    assert any(a["labels"]["device"] == CANARY and a["labels"]["reason"] == "gate-failed"
               and a["labels"]["site"] == "site01" for a in got), got


def test_a_device_cut_off_mid_wave_reverts_by_itself_and_the_rollout_pauses_then_resumes(lab):
    record_before = lab.record("demo-1.0.0")
    victim = sorted(d for d, e in record_before["devices"].items() if e["wave"] == 1)[0]
    args = ["-e", "rollout_id=cut", "-e", "rollout_revert_wait=5"] + waived(unreachable="pause", soak=20)
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", lab.inventory,
         "-i", lab.fleet_config, "-e", "@" + lab.vars_file, "playbooks/rollout.yml",
         "-e", "rollout_release_file=%s/demo-1.0.0.yml" % lab.releases] + args,
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1"))
    try:
        deadline = time.time() + 600
        while time.time() < deadline:  # wait until the victim switched and is soaking
            if listing(victim)["pending"] is not None:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the victim was never switched")
        # Management access gone: every SSH packet dropped, the live session included.
        cut = subprocess.run(
            ["docker", "exec", "-i", "%s-%s" % (LAB, victim), "nft", "-f", "-"], capture_output=True, text=True,
            input="table inet labcut {\n chain input { type filter hook input priority -300; tcp dport 22 drop; }\n}\n",
            check=False)
        assert cut.returncode == 0, cut.stderr
        out = proc.communicate(timeout=900)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    lab.outputs.append(out)
    assert proc.returncode != 0, out[-6000:]
    record = lab.record("cut")
    assert record["status"] == "paused", record
    assert "%s unreachable in wave 1 (unreachable: pause)" % victim in record["reason"]
    assert [w["wave"] for w in record["waves"]] == [0, 1]
    wave2 = [d for d, e in record["devices"].items() if e["wave"] == 2]
    for device in wave2:  # the next wave never started
        assert running_release(device)[0] == "demo-1.1.0", device
    # The victim reverts by itself within its confirm timeout, without the controller.
    deadline = time.time() + CONFIRM_TIMEOUT + 30
    while time.time() < deadline and listing(victim)["pending"] is not None:
        time.sleep(1)
    running, state = running_release(victim)
    assert running == "demo-1.1.0" and state["pending"] is None, state
    assert any(i["what"] == "deadman-revert" for i in state["incidents"]), state["incidents"]
    dexec(victim, "nft", "delete", "table", "inet", "labcut")
    resumed = lab.rollout("demo-1.0.0", "-e", "rollout_action=resume", *args)
    assert resumed.rc == 0, resumed.out[-6000:]
    assert lab.record("cut")["status"] == "completed"
    assert_all_on("demo-1.0.0")


def test_a_whole_rollout_rolls_back(lab):
    run = lab.rollout("demo-1.0.0", "-e", "rollout_id=cut", "-e", "rollout_action=rollback", *waived())
    assert run.rc == 0, run.out[-6000:]
    assert lab.record("cut")["status"] == "rolled-back"
    assert_all_on("demo-1.1.0")


def test_no_secret_in_any_output_or_record(lab):
    texts = list(lab.outputs)
    for root, _dirs, files in os.walk(lab.records):
        for name in files:
            with open(os.path.join(root, name)) as handle:
                texts.append(handle.read())
    for secret in SECRETS.values():
        assert not any(secret in text for text in texts), secret
