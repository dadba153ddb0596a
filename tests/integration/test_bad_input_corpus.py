# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Malformed inputs through the tools a user runs: ansible-inventory, playbooks/rollout.yml and site.yml (no lab).

The fleet's devices are at TEST-NET addresses (192.0.2.0/24, RFC 5737) that nothing answers: a run that tried to
reach one would print UNREACHABLE. Every malformed input must be refused naming its file and key, with no device
contacted, which is what "no device touched" means here, in a way a lab's before/after comparison cannot show
better: not one connection was attempted.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import yaml

from conftest import BIN, REPO, ansible

with open(os.path.join(REPO, "samples", "releases", "demo-1.0.0.yml")) as _handle:
    RELEASE = yaml.safe_load(_handle)
for _workload in RELEASE["workloads"].values():
    _workload["digest"] = "sha256:" + "ab" * 32

FLEET = {
    "sites": {"site01": {"registry": "site01-hub:5000"}},
    "devices": {"site01-dev01": {"site": "site01", "address": "192.0.2.11", "tags": ["canary"]},
                "site01-dev02": {"site": "site01", "address": "192.0.2.12"}},
    "rollout": {"waves": [1, "100%"], "environment": "lab", "approval_waived": True, "soak": 5},
}


def write_fleet(tmp_path, text):
    (tmp_path / "fleet.yml").write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    (tmp_path / "edge.fleet.yml").write_text("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n")
    return str(tmp_path / "edge.fleet.yml")


def with_change(path, value):
    release = yaml.safe_load(yaml.safe_dump(RELEASE))
    parent = release
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return yaml.safe_dump(release)


# (name, manifest text, what the refusal must contain: file + key path)
MANIFESTS = [
    ("duplicate-key", yaml.safe_dump(RELEASE).replace("workloads:\n", "workloads:\n  predictor: {}\n", 1),
     "the key 'predictor' is given twice"),
    ("alias-bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
     "aliases expand to more than"),
    ("not-utf8", b"release: demo\nworkloads: {\xff\xfe}\n", "not UTF-8: byte 0xff"),
    ("bad-probe", with_change(("workloads", "predictor", "probes"), [{"name": "p", "type": "ping"}]),
     "workloads.predictor.probes[0] (p).type"),
    ("no-limits", with_change(("workloads", "trainer", "memory"), None), "workloads.trainer"),
    ("string-bool", with_change(("workloads", "predictor", "read_only"), "yes_please"), "workloads.predictor"),
]


def write_manifest(tmp_path, name, text):
    path = tmp_path / (name + ".yml")
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def assert_refused_untouched(run, path, expected):
    flat = " ".join(run.out.split())
    assert run.rc != 0, run.out[-3000:]
    assert path in flat and expected in flat, run.out[-3000:]
    assert "UNREACHABLE" not in run.out, run.out[-3000:]  # not one device was tried


@pytest.mark.parametrize("name, text, expected", MANIFESTS, ids=[m[0] for m in MANIFESTS])
def test_a_malformed_release_is_refused_by_the_rollout_before_any_device(tmp_path, name, text, expected):
    fleet = write_fleet(tmp_path, yaml.safe_dump(FLEET))
    path = write_manifest(tmp_path, name, text)
    run = ansible("ansible-playbook", "-i", fleet, "playbooks/rollout.yml", "-e", "rollout_release_file=" + path,
                  "-e", "rollout_record_dir=%s" % (tmp_path / "records"),
                  "-e", "rollout_approvals_dir=%s" % (tmp_path / "approvals"))
    assert_refused_untouched(run, name + ".yml", expected)
    assert not (tmp_path / "records").exists() or not os.listdir(str(tmp_path / "records")), "a record was begun"


@pytest.mark.parametrize("site02_secrets, expected", [
    ({"other": "x"}, "site site02 (device site02-dev01): secret(s) dashboard_token are read by workloads but have no "
                     "value in workloads_secrets"),
    ("not-a-mapping", "site site02 (device site02-dev01): workloads_secrets must be a mapping"),
], ids=["secret-missing", "secrets-not-a-mapping"])
def test_every_target_site_is_checked_for_the_secrets_the_release_reads(tmp_path, site02_secrets, expected):
    """Not only the first site: site02's devices lack a value for a secret the release reads (demo's
    dashboard_token), which site01's have; refused naming the site, before any device and with no value shown."""
    fleet = yaml.safe_load(yaml.safe_dump(FLEET))
    fleet["sites"]["site01"]["vars"] = {"workloads_secrets": {"dashboard_token": "corpus-token-site01"}}
    fleet["sites"]["site02"] = {"registry": "site02-hub:5000", "vars": {"workloads_secrets": site02_secrets}}
    fleet["devices"]["site02-dev01"] = {"site": "site02", "address": "192.0.2.21"}
    path = write_manifest(tmp_path, "demo", yaml.safe_dump(RELEASE))
    run = ansible("ansible-playbook", "-i", write_fleet(tmp_path, yaml.safe_dump(fleet)), "playbooks/rollout.yml",
                  "-e", "rollout_release_file=" + path, "-e", "rollout_record_dir=%s" % (tmp_path / "records"),
                  "-e", "rollout_approvals_dir=%s" % (tmp_path / "approvals"))
    assert_refused_untouched(run, "demo.yml", expected)
    assert "corpus-token-site01" not in run.out


def test_a_release_is_checked_before_its_approval_and_the_rollout_still_waits_for_one(tmp_path):
    """playbooks/rollout_check.yml (the AWX workflow's node before its approval) checks a production rollout and
    shows its plan with no approval given, writing nothing; playbooks/rollout.yml then refuses to start without one."""
    fleet = yaml.safe_load(yaml.safe_dump(FLEET))
    fleet["rollout"] = {"waves": [1, "100%"], "environment": "production", "soak": 5}
    fleet["sites"]["site01"]["vars"] = {"workloads_secrets": {"dashboard_token": "corpus-token-site01"}}
    inventory = write_fleet(tmp_path, yaml.safe_dump(fleet))
    path = write_manifest(tmp_path, "demo", yaml.safe_dump(RELEASE))
    state = ["-e", "rollout_record_dir=%s" % (tmp_path / "records"), "-e", "rollout_approvals_dir=%s" % (tmp_path / "approvals"),
             "-e", "rollout_check_registries=false"]
    run = ansible("ansible-playbook", "-i", inventory, "playbooks/rollout_check.yml", "-e", "rollout_release_file=" + path,
                  *state)
    flat = " ".join(run.out.split())
    assert run.rc == 0, run.out[-3000:]
    assert "release %s to 2 device(s)" % RELEASE["release"] in flat, run.out[-3000:]
    assert "site01-dev01" in flat and "site01-dev02" in flat, run.out[-3000:]  # the waves' devices
    assert "UNREACHABLE" not in run.out and not (tmp_path / "records").exists() and not (tmp_path / "approvals").exists()
    assert "corpus-token-site01" not in run.out

    run = ansible("ansible-playbook", "-i", inventory, "playbooks/rollout.yml", "-e", "rollout_release_file=" + path, *state)
    assert_refused_untouched(run, "approvals", "is not approved for production")


def test_the_approval_of_an_awx_workflow_is_taken_only_from_a_job_a_workflow_started(tmp_path):
    """rollout_approval_from=awx_workflow (extensions/awx/'s rollout node): refused without the variables AWX gives a
    job its workflow started, before any device; with them, the record names the workflow job as the approval."""
    fleet = yaml.safe_load(yaml.safe_dump(FLEET))
    fleet["rollout"] = {"waves": [1, "100%"], "environment": "production", "soak": 5}
    fleet["sites"]["site01"]["vars"] = {"workloads_secrets": {"dashboard_token": "corpus-token-site01"}}
    inventory = write_fleet(tmp_path, yaml.safe_dump(fleet))
    path = write_manifest(tmp_path, "demo", yaml.safe_dump(RELEASE))
    args = ["-i", inventory, "playbooks/rollout.yml", "-e", "rollout_release_file=" + path,
            "-e", "rollout_record_dir=%s" % (tmp_path / "records"), "-e", "rollout_approvals_dir=%s" % (tmp_path / "approvals"),
            "-e", "rollout_check_registries=false", "-e", "rollout_approval_from=awx_workflow"]
    run = ansible("ansible-playbook", *args)
    assert_refused_untouched(run, "rollout_approval_from=awx_workflow", "this job was not started by one "
                             "(awx_workflow_job_id is not set)")

    # AWX's variables of a workflow's job; the TEST-NET devices then fail the stage unreachable (timeout 1 s).
    awx = ["-e", "awx_workflow_job_id=4711", "-e", "awx_user_name=alice",
           "-e", '{"awx_workflow_job_name": "edgeops.fleet rollout with approval"}']
    # The check node's artifact binds the approval to the manifest the approver read: another one is refused.
    run = ansible("ansible-playbook", *(args + awx + ["-e", '{"edgeops_checked_manifest": {"sha256": "%s"}}' % ("0" * 64)]))
    assert_refused_untouched(run, "rollout_approval_from=awx_workflow", "the release manifest changed after the "
                             "workflow's check node (sha256 000000000000, now ")
    with open(path, "rb") as handle:
        checked = ["-e", '{"edgeops_checked_manifest": {"sha256": "%s"}}' % hashlib.sha256(handle.read()).hexdigest()]
    run = ansible("ansible-playbook", *(args + awx + checked + ["-e", "ansible_timeout=1", "-e", "rollout_revert_wait=0"]))
    assert "approved by the approval node of AWX workflow job 4711 (edgeops.fleet rollout with approval, launched by " \
           "alice)" in " ".join(run.out.split()), run.out[-3000:]
    with open(str(tmp_path / "records" / (RELEASE["release"] + ".json"))) as handle:
        approval = json.load(handle)["approval"]
    assert approval["via"] == "awx-workflow" and approval["workflow_job_id"] == 4711 and approval["launched_by"] == "alice"
    assert not (tmp_path / "approvals").exists()


def test_a_rollout_on_devices_a_killed_rollout_held_is_refused_until_its_lock_is_broken(tmp_path):
    """The devices' lock, left by a controller killed mid-run (SIGKILL to ansible-playbook and its ssh, as a cancelled
    job or a lost terminal): the next rollout is refused before any device, naming the holder; rollout_break_lock
    breaks it (recorded). The TEST-NET devices are then unreachable at the stage: they stay in the play, so the run
    still closes the record and releases its own lock."""
    records = tmp_path / "records"
    path = write_manifest(tmp_path, "demo", yaml.safe_dump(RELEASE))
    fleet = yaml.safe_load(yaml.safe_dump(FLEET))
    fleet["sites"]["site01"]["vars"] = {"workloads_secrets": {"dashboard_token": "corpus-token-site01"}}
    args = ["-i", write_fleet(tmp_path, yaml.safe_dump(fleet)), "playbooks/rollout.yml", "-e", "rollout_release_file=" + path,
            "-e", "rollout_record_dir=%s" % records, "-e", "rollout_check_registries=false"]
    # A rollout "other" takes the lock, then waits on its stage's SSH connections (30 s timeout): killed there.
    killed = subprocess.Popen([os.path.join(BIN, "ansible-playbook")] + args + ["-e", "rollout_id=other", "-e", "ansible_timeout=30"],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env=dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"]))
    try:
        deadline = time.monotonic() + 180
        while not (records / "running" / "other.json").exists():
            assert killed.poll() is None, "the first rollout ended before it took its lock (rc %s)" % killed.returncode
            assert time.monotonic() < deadline, "the first rollout took no lock within 180 s"
            time.sleep(0.2)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    held = json.loads((records / "running" / "other.json").read_text())

    run = ansible("ansible-playbook", *args)
    assert_refused_untouched(run, "running", "another rollout is running on these devices: rollout other of %s (running "
                             "since %s, controller %s" % (RELEASE["release"], held["since"], socket.gethostname()))
    assert "holds site01-dev01, site01-dev02. Wait for it" in " ".join(run.out.split()), run.out[-3000:]
    assert not (records / (RELEASE["release"] + ".json")).exists()

    run = ansible("ansible-playbook", *(args + ["-e", "rollout_break_lock=other", "-e", "ansible_timeout=1",
                                                "-e", "rollout_revert_wait=0"]))
    assert "broke the lock of rollout other (%s, since %s, 2 device(s))" % (RELEASE["release"], held["since"]) in " ".join(
        run.out.split()), run.out[-3000:]
    with open(str(records / (RELEASE["release"] + ".json"))) as handle:
        record = json.load(handle)
    assert [b["lock"]["rollout"] for b in record["lock_breaks"]] == ["other"]
    assert record["status"] == "aborted", record["status"]  # closed, though no device could be reached
    assert {d["outcome"] for d in record["devices"].values()} == {"unreachable"}
    assert "192.0.2.1" in record["devices"]["site01-dev01"]["reason"]
    assert not list((records / "running").glob("*.json"))  # released by the report


def test_a_state_store_that_cannot_be_written_is_refused_before_any_device(tmp_path):
    """rollout_record_dir under a file (a store not mounted, or not shared with an AWX job): a clear error naming it."""
    (tmp_path / "not-a-dir").write_text("")
    path = write_manifest(tmp_path, "demo", yaml.safe_dump(RELEASE))
    fleet = yaml.safe_load(yaml.safe_dump(FLEET))
    fleet["sites"]["site01"]["vars"] = {"workloads_secrets": {"dashboard_token": "corpus-token-site01"}}
    run = ansible("ansible-playbook", "-i", write_fleet(tmp_path, yaml.safe_dump(fleet)), "playbooks/rollout.yml",
                  "-e", "rollout_release_file=" + path, "-e", "rollout_record_dir=%s" % (tmp_path / "not-a-dir" / "records"),
                  "-e", "rollout_check_registries=false")
    assert_refused_untouched(run, "not-a-dir/records", "the rollout's state store cannot be used")
    assert "Traceback" not in run.out


def test_an_s3_state_store_that_does_not_answer_is_refused_before_any_device(tmp_path, monkeypatch):
    """rollout_state_store=s3 at an endpoint nothing listens on (loopback, a port just closed): the first step names
    the bucket, the object and the endpoint, within seconds (short botocore timeouts), and no device is tried."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = "http://127.0.0.1:%d" % sock.getsockname()[1]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "corpus-not-a-key")
    path = write_manifest(tmp_path, "demo", yaml.safe_dump(RELEASE))
    fleet = yaml.safe_load(yaml.safe_dump(FLEET))
    fleet["sites"]["site01"]["vars"] = {"workloads_secrets": {"dashboard_token": "corpus-token-site01"}}
    store = {"rollout_state_store": "s3", "rollout_state_s3": {"bucket": "fleet-state", "endpoint_url": closed,
                                                               "region": "us-east-1"}}
    run = ansible("ansible-playbook", "-i", write_fleet(tmp_path, yaml.safe_dump(fleet)), "playbooks/rollout.yml",
                  "-e", "rollout_release_file=" + path, "-e", "rollout_check_registries=false", "-e", json.dumps(store))
    assert_refused_untouched(run, "s3://fleet-state/edgeops/rollouts/%s.json" % RELEASE["release"],
                             "the rollout's state store cannot be used: cannot read")
    assert "endpoint %s" % closed in " ".join(run.out.split()) and "Traceback" not in run.out
    assert "corpus-not-a-key" not in run.out


def survey_questions():
    """Every survey question of the AWX job templates and workflows that the rollout playbook reads."""
    content = {}
    for name in ("job_templates.yml", "workflows.yml"):
        with open(os.path.join(REPO, "extensions", "awx", name)) as handle:
            content.update(yaml.safe_load(handle))
    questions = {}
    for item in content["controller_templates"] + content["controller_workflows"]:
        for question in item.get("survey_spec", {}).get("spec", []):
            questions.setdefault(question["variable"], question)
    return questions


# Survey answers AWX would not let through its form, but the API's extra_vars, a survey edited by hand, or an older
# template can: (variable, value, what the refusal says). The playbook refuses each before any device is tried.
SURVEY_OUT_OF_RANGE = [
    ("rollout_action", "deploy", "rollout_action"),
    ("rollout_id", "r" * 129, "rollout id must be letters, digits and . _ : + - (at most 128)"),
    ("rollout_id", "../other", "rollout id must be letters, digits"),
    ("rollout_break_lock", "../../etc", "rollout_break_lock must be letters, digits"),
    ("rollout_targets", "tag_nothing_like_this", "rollout_targets: the pattern 'tag_nothing_like_this' matches no host"),
]


def test_the_surveys_allow_no_wider_range_than_the_playbook():
    questions = survey_questions()
    assert set(questions["rollout_action"]["choices"]) == {"start", "resume", "rollback"}
    for variable in ("rollout_id", "rollout_break_lock"):
        assert questions[variable]["max"] <= 128, variable  # check_id's limit


@pytest.mark.parametrize("variable, value, expected", SURVEY_OUT_OF_RANGE,
                         ids=["%s-%d" % (case[0], n) for n, case in enumerate(SURVEY_OUT_OF_RANGE)])
def test_a_survey_value_out_of_range_is_refused_naming_it_before_any_device(tmp_path, variable, value, expected):
    assert variable in survey_questions()
    path = write_manifest(tmp_path, "demo", yaml.safe_dump(RELEASE))
    fleet = yaml.safe_load(yaml.safe_dump(FLEET))
    fleet["sites"]["site01"]["vars"] = {"workloads_secrets": {"dashboard_token": "corpus-token-site01"}}
    run = ansible("ansible-playbook", "-i", write_fleet(tmp_path, yaml.safe_dump(fleet)), "playbooks/rollout.yml",
                  "-e", "rollout_release_file=" + path, "-e", "rollout_check_registries=false",
                  "-e", "rollout_record_dir=%s" % (tmp_path / "records"), "-e", json.dumps({variable: value}))
    assert_refused_untouched(run, variable if variable != "rollout_id" else "", expected)
    assert not (tmp_path / "records").exists() or not list((tmp_path / "records").glob("*.json")), "a record was begun"


@pytest.mark.parametrize("name, text, expected", MANIFESTS, ids=[m[0] for m in MANIFESTS])
def test_a_malformed_release_is_refused_by_site_yml_in_its_first_play(tmp_path, name, text, expected):
    fleet = write_fleet(tmp_path, yaml.safe_dump(FLEET))
    path = write_manifest(tmp_path, name, text)
    run = ansible("ansible-playbook", "-i", fleet, "site.yml", "-e", "workloads_release_file=" + path,
                  "-e", "workloads_registry=site01-hub:5000")
    assert_refused_untouched(run, name + ".yml", expected)
    assert "PLAY [Base operating system" not in run.out.split("fatal:")[0], run.out[-3000:]


FLEETS = [
    ("duplicate-device", "sites: {site01: {}}\ndevices:\n  d1: {site: site01, address: 192.0.2.11}\n"
     "  d1: {site: site01, address: 192.0.2.12}\n", "the key 'd1' is given twice"),
    ("bastion-elsewhere", yaml.safe_dump({"sites": {"site01": {"bastion": {"host": "d2", "user": "jump"}}, "site02": {}},
                                          "devices": {"d1": {"site": "site01", "address": "192.0.2.11"},
                                                      "d2": {"site": "site02", "address": "192.0.2.12"}}}), "d2"),
    ("empty", "", "fleet.yml"),
    ("not-utf8", b"sites: {site01: {}}\ndevices: {d1: {site: site01, address: \xff}}\n", "not UTF-8: byte 0xff"),
]


@pytest.mark.parametrize("name, text, expected", FLEETS, ids=[f[0] for f in FLEETS])
def test_a_malformed_fleet_file_stops_site_yml_before_any_play(tmp_path, name, text, expected):
    fleet = write_fleet(tmp_path, text)
    run = ansible("ansible-playbook", "-i", fleet, "site.yml")
    flat = " ".join(run.out.split())
    assert run.rc != 0, run.out[-3000:]
    assert "fleet.yml" in flat and expected in flat, run.out[-3000:]
    assert "PLAY [" not in run.out and "UNREACHABLE" not in run.out, run.out[-3000:]
