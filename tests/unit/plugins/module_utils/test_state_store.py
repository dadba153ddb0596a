# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollouts' state stores: a directory on real temp files, and an S3 bucket.

The S3 side is tested over HTTP against moto's server on loopback: a STAND-IN for a real S3-compatible server (none
installs from the package registries here; radosgw needs a Ceph cluster). It speaks the S3 REST protocol, including
the conditional writes (If-Match, If-None-Match) the locks rely on, but it is not AWS: what it proves is that the
store's requests and its handling of the answers are right, not how a given server behaves under load.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket

import pytest

from ansible_collections.edgeops.fleet.plugins.module_utils import _rollout as ro
from ansible_collections.edgeops.fleet.plugins.module_utils import _state_store as state

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

T0 = "2026-12-04T10:00:00Z"
POLICY = {"wave_plan": [1, "100%"], "soak": 5, "failure_threshold": 10, "min_executed": 1, "canary_tag": "",
          "site_cap": "100%", "unreachable": "fail", "rollback_switched": True, "confirm_timeout": 120,
          "environment": "lab", "approval_waived": True}
DEVICES = {"dev01": {"site": "site01", "wave": 0}, "dev02": {"site": "site01", "wave": 1}}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        yield "http://127.0.0.1:%d" % server._port
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    # moto takes any key; these are the stand-in's, not a secret.
    for name, value in (("AWS_ACCESS_KEY_ID", "stand-in"), ("AWS_SECRET_ACCESS_KEY", "stand-in"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)


@pytest.fixture
def bucket(s3_endpoint, aws_env, request):
    name = "edgeops-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def s3_store(endpoint, bucket, prefix="fleet-a/"):
    return state.S3Store(bucket, prefix, endpoint_url=endpoint, region="us-east-1")


@pytest.fixture(params=["directory", "s3"])
def store(request, tmp_path):
    if request.param == "directory":
        return state.DirectoryStore(str(tmp_path / "rollouts"), str(tmp_path / "approvals"))
    return s3_store(request.getfixturevalue("s3_endpoint"), request.getfixturevalue("bucket"))


def take(store, rollout_id, devices, break_lock=None):
    """rollout_record's own lock taking (the module's code, not a copy): (token, the broken lock or None)."""
    from ansible_collections.edgeops.fleet.plugins.modules import rollout_record

    return rollout_record._take_lock(store, rollout_id, "demo-1", devices, {"user": "alice"}, break_lock, T0)


def test_records_and_approvals_read_back_as_written(store):
    assert store.read("record", "r1") is None
    store.write("record", "r1", {"id": "r1", "status": "running"})
    store.write("approval", "demo-1", {"release": "demo-1", "approver": "alice"})
    assert store.read("record", "r1") == {"id": "r1", "status": "running"}
    assert store.read("approval", "demo-1")["approver"] == "alice"
    assert store.read("approval", "demo-2") is None


def test_the_lock_refuses_a_shared_device_and_lets_a_disjoint_one_through(store):
    t1 = take(store, "r1", ["dev01", "dev02"])[0]
    with pytest.raises(ro.RolloutError, match="rollout r1 of demo-1 .*holds dev02"):
        take(store, "r2", ["dev02", "dev03"])
    t3 = take(store, "r3", ["dev04"])[0]  # an A/B arm on other devices
    assert store.read_lock("r1")["token"] == t1 and store.read_lock("r3")["token"] == t3
    assert store.read_lock("r2") is None  # the refused one left nothing
    # Broken by name: the holder's lock goes, the new one is taken in the same change.
    assert take(store, "r2", ["dev02"], break_lock="r1")[1]["lock"]["rollout"] == "r1"
    assert store.read_lock("r1") is None and store.read_lock("r2")["devices"] == ["dev02"]


def test_a_lock_write_that_lost_the_race_decides_again_on_what_the_winner_wrote(s3_endpoint, bucket):
    """Two controllers (two clients) read the locks at once; the second to write must see the first's lock."""
    first, second = s3_store(s3_endpoint, bucket), s3_store(s3_endpoint, bucket)
    calls = []

    def slow_change(held):
        calls.append(sorted(held))
        if len(calls) == 1:  # between this controller's read and its write, the other takes dev02
            take(second, "other", ["dev02"])
        conflicts = ro.lock_conflicts(list(held.values()), "mine", ["dev02"])
        if conflicts:
            raise ro.lock_refusal(conflicts, first.where("lock"))
        return {"mine": ro.lock_entry("mine", "demo-1", ["dev02"], {}, "t-mine", T0)}, None

    with pytest.raises(ro.RolloutError, match="rollout other of demo-1"):
        first.update_locks(slow_change, sleep=lambda seconds: None)
    assert calls == [[], ["other"]]  # the first write was refused by If-None-Match, the retry saw "other"
    assert first.read_lock("mine") is None and first.read_lock("other")["devices"] == ["dev02"]


def test_a_bucket_that_is_not_there_or_an_endpoint_that_does_not_answer_is_named(s3_endpoint, aws_env):
    with pytest.raises(state.StoreError, match=r"cannot read s3://no-such-bucket/fleet-a/rollouts/r1.json: NoSuchBucket"):
        s3_store(s3_endpoint, "no-such-bucket").read("record", "r1")
    closed = "http://127.0.0.1:%d" % free_port()
    with pytest.raises(state.StoreError, match=r"state store cannot be used: cannot read s3://b/fleet-a/locks.json: Could not connect.*"
                                               r"endpoint %s" % closed):
        take(s3_store(closed, "b"), "r1", ["dev01"])


def test_an_object_that_is_no_json_is_named(s3_endpoint, bucket):
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=bucket, Key="fleet-a/rollouts/r1.json", Body=b'{"id": "r')
    with pytest.raises(state.StoreError, match="s3://%s/fleet-a/rollouts/r1.json is not valid JSON" % bucket):
        s3_store(s3_endpoint, bucket).read("record", "r1")


# ---- the rollout_record module on the S3 store ------------------------------------------------------------

def run_record(capsys, tmp_path, **args):
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.edgeops.fleet.plugins.modules import rollout_record

    manifest = tmp_path / "demo-1.yml"
    manifest.write_text("release: demo-1\n")
    args = dict({"manifest": str(manifest), "release": "demo-1", "policy": POLICY, "environment": "lab",
                 "approval_waived": True}, **args)
    with patch_module_args(args), pytest.raises(SystemExit):
        rollout_record.main()
    return json.loads(capsys.readouterr().out)


def test_the_module_keeps_record_and_lock_in_the_bucket(capsys, tmp_path, s3_endpoint, bucket):
    s3 = {"bucket": bucket, "prefix": "fleet-a/", "endpoint_url": s3_endpoint, "region": "us-east-1"}
    started = run_record(capsys, tmp_path, step="start", state_store="s3", s3=s3, devices=DEVICES,
                         holder={"awx_job_id": 41})
    assert not started.get("failed"), started
    assert started["path"] == "s3://%s/fleet-a/rollouts/demo-1.json" % bucket
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    locks = json.loads(client.get_object(Bucket=bucket, Key="fleet-a/locks.json")["Body"].read())["locks"]
    assert locks["demo-1"]["token"] == started["lock_token"] and locks["demo-1"]["holder"]["awx_job_id"] == 41
    # Another rollout (another job, its own container) wanting dev02 is refused, naming the holder, and writes nothing.
    refused = run_record(capsys, tmp_path, step="start", state_store="s3", s3=s3, rollout_id="demo-1-b",
                         devices={"dev02": DEVICES["dev02"]})
    assert refused["failed"] and "another rollout is running on these devices: rollout demo-1 of demo-1" in refused["msg"]
    assert "awx_job_id 41" in refused["msg"] and "s3://%s/fleet-a/locks.json" % bucket in refused["msg"]
    assert client.list_objects_v2(Bucket=bucket, Prefix="fleet-a/rollouts/demo-1-b")["KeyCount"] == 0
    # Closed before any device was switched: paused, and it keeps its devices (no token: no controller drives it).
    finished = run_record(capsys, tmp_path, step="finish", state_store="s3", s3=s3, lock_token=started["lock_token"],
                          results={})
    assert finished["status"] == "paused", finished
    assert finished["stats"]["record"] == "s3://%s/fleet-a/rollouts/demo-1.json" % bucket
    # Its HTML page beside the record, in the bucket too.
    assert finished["report"] == "s3://%s/fleet-a/rollouts/demo-1.html" % bucket
    page = client.get_object(Bucket=bucket, Key="fleet-a/rollouts/demo-1.html")
    assert page["ContentType"] == "text/html; charset=utf-8" and b"demo-1" in page["Body"].read()
    locks = json.loads(client.get_object(Bucket=bucket, Key="fleet-a/locks.json")["Body"].read())["locks"]
    assert locks["demo-1"]["state"] == "paused" and locks["demo-1"]["token"] == ""
    # Its rollback (another job) takes the paused lock back, and closing the rollback lets the devices go.
    rollback = run_record(capsys, tmp_path, step="start", state_store="s3", s3=s3, devices=DEVICES, rollout_action="rollback")
    assert not rollback.get("failed"), rollback
    closed = run_record(capsys, tmp_path, step="rolled_back", state_store="s3", s3=s3, lock_token=rollback["lock_token"],
                        results={})
    assert closed["status"] == "rolled-back", closed
    locks = json.loads(client.get_object(Bucket=bucket, Key="fleet-a/locks.json")["Body"].read())["locks"]
    assert locks == {}
    record = json.loads(client.get_object(Bucket=bucket, Key="fleet-a/rollouts/demo-1.json")["Body"].read())
    assert record["status"] == "rolled-back" and len(record["attempts"]) == 2


def test_the_module_names_a_store_it_cannot_reach_before_anything_is_taken(capsys, tmp_path, aws_env):
    closed = "http://127.0.0.1:%d" % free_port()
    result = run_record(capsys, tmp_path, step="start", state_store="s3", devices=DEVICES,
                        s3={"bucket": "fleet", "endpoint_url": closed})
    assert result["failed"]
    assert result["msg"].startswith("the rollout's state store cannot be used: cannot read s3://fleet/edgeops/rollouts/demo-1.json")
    assert "lock_token" not in result
