# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollouts run the way AWX runs jobs: each job is ansible-runner with process isolation, in a new container of the
execution environment built from execution-environment.yml (conftest.py's `ee_image`, scripts/build_ee.sh), from a
private data directory of its own (project/: a copy of the repository; inventory/; env/: extravars, envvars,
settings, ssh_key), so the jobs share nothing but the rollout's state store: an S3 bucket on moto's server on the
host's loopback (a stand-in for an S3-compatible server), its keys in each job's environment as an AWX credential
injects them; or (EDGEOPS_AWX_STORES) a directory mounted into every job's container (AWX's "paths to expose to
isolated jobs").

On three devices of the ten-device light lab (conftest.py's `rollout_scale_lab`, after test_rollout_scale.py left
every device on light-1.1.0), under a production fleet file (no waiver: the approval lock holds): an approval job;
two rollouts of the same devices launched at once - exactly one takes the devices' lock, the other is refused before
any device, naming the holder - while one device is frozen, so the one that runs pauses and keeps its lock; a resume
job with the device back, which completes; a rollback job, which brings every device back to light-1.1.0. Between
them the workflow's alert job posts the paused rollout's outcome to the lab hub's Alertmanager; after them the
incidents job, twice, keeps what the devices logged in the store and fetches only what is new. After each
job its set_stats (what AWX hands to a workflow's next node) are read from runner's artifacts, and the job's
container (docker's events) is checked: the EE image, a new one per job, gone after it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
import yaml

from conftest import BIN, REPO
from rollout_lab import LIGHT_GOOD, SCALE_CANARY, SECRETS, waived

RELEASE = "light-1.0.0"
# Three of the lab's ten devices: its canary and two more; the victim is frozen (docker pause) while the race runs.
DEVICES = [SCALE_CANARY, "site01-dev02", "site01-dev03"]
VICTIM = "site01-dev03"
RACERS = ("awx-a", "awx-b")
# The frozen device is noticed by the SSH connect timeout of the race's jobs (ANSIBLE_TIMEOUT; Ansible's default is
# 10 s): it accepts TCP (docker's proxy) and never sends ssh's banner, once while staging and once while settling.
# Not shorter: a loaded device's sshd must still answer the others in time. Every other job keeps the default.
CUT_TIMEOUT = 8
# One job at most this long (the resume, a whole rollout of three devices, takes about a minute on an idle machine).
JOB_TIMEOUT = 900
POLICY = {"unreachable": "pause"}


class DirectoryStore(object):
    """The rollout's state store of the jobs: a host directory that every job's container mounts at the same path.
    `vars` is all a job is told about it (extravars); the rest is how the test reads it."""

    def __init__(self, root):
        self.root = root
        self.vars = {"rollout_state_store": "directory", "rollout_record_dir": os.path.join(root, "rollouts"),
                     "rollout_approvals_dir": os.path.join(root, "approvals")}
        self.mounts = ["%s:%s:Z" % (root, root)]
        self.envvars = {}
        for path in (self.vars["rollout_record_dir"], self.vars["rollout_approvals_dir"]):
            os.makedirs(path)

    @staticmethod
    def _read(path):
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return json.load(handle)

    def record(self, rollout_id):
        return self._read(os.path.join(self.vars["rollout_record_dir"], rollout_id + ".json"))

    def lock(self, rollout_id):
        """The devices' lock a rollout holds (None: it holds none)."""
        return self._read(os.path.join(self.vars["rollout_record_dir"], "running", rollout_id + ".json"))

    def approval(self, release):
        return self._read(os.path.join(self.vars["rollout_approvals_dir"], release + ".json"))


class S3Store(object):
    """The rollout's state store of the jobs: a bucket on moto's S3 server on the host's loopback - a STAND-IN for an
    S3-compatible server (none installs from the package registries here; radosgw needs a Ceph cluster). The jobs
    reach it over the host's network and get its keys in their environment, as an AWX "Amazon Web Services"
    credential injects them; they share nothing else."""

    PREFIX = "fleet-lab/"

    def __init__(self, endpoint, bucket):
        import boto3

        # The stand-in takes any key; these are not a secret (a real one would come from an AWX credential).
        self.envvars = {"AWS_ACCESS_KEY_ID": "awx-test-key", "AWS_SECRET_ACCESS_KEY": "awx-test-not-a-secret",
                        "AWS_DEFAULT_REGION": "us-east-1"}
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                   aws_access_key_id=self.envvars["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=self.envvars["AWS_SECRET_ACCESS_KEY"])
        self.bucket = bucket
        self.client.create_bucket(Bucket=bucket)
        self.vars = {"rollout_state_store": "s3",
                     "rollout_state_s3": {"bucket": bucket, "prefix": self.PREFIX, "endpoint_url": endpoint,
                                          "region": "us-east-1"}}
        self.mounts = []

    def _read(self, key):
        try:
            return json.loads(self.client.get_object(Bucket=self.bucket, Key=self.PREFIX + key)["Body"].read())
        except self.client.exceptions.NoSuchKey:
            return None

    def keys(self, prefix):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.PREFIX + prefix)
        return sorted(item["Key"][len(self.PREFIX):] for page in pages for item in page.get("Contents", []))

    def text(self, key):
        return self.client.get_object(Bucket=self.bucket, Key=self.PREFIX + key)["Body"].read().decode()

    def record(self, rollout_id):
        return self._read("rollouts/%s.json" % rollout_id)

    def lock(self, rollout_id):
        return ((self._read("locks.json") or {}).get("locks") or {}).get(rollout_id)

    def approval(self, release):
        return self._read("approvals/%s.json" % release)


class Job(object):
    """One AWX job: `ansible-runner run` of a playbook from its own private data directory, in a container of the EE
    (env/settings); docker's events of that container are watched from before it starts until it is gone."""

    def __init__(self, name, pdd, playbook, job_id):
        self.name, self.pdd, self.playbook, self.job_id = name, pdd, playbook, job_id
        self.ident = name  # unique per test module: the container is ansible_runner_<ident>
        self.container_name = "ansible_runner_" + re.sub("[^a-zA-Z0-9_-]", "_", name)  # as ansible-runner names it
        self.docker_events = []
        # --since: events from before this stream was open are replayed (no container has this name before).
        self._watch = subprocess.Popen(
            ["docker", "events", "--since", "%d" % (time.time() - 10), "--format", "{{json .}}",
             "--filter", "type=container", "--filter", "container=" + self.container_name], stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read_events)
        self._reader.start()
        self.proc = None

    def launch(self):
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "ansible-runner"), "run", self.pdd, "-p", self.playbook, "--ident", self.ident],
            cwd=self.pdd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"]))

    def _read_events(self):
        for line in self._watch.stdout:
            event = json.loads(line)
            self.docker_events.append(event)
            if event.get("Action") == "destroy":
                return

    def stop(self):
        """A job that did not end in time (or whose test failed first): the runner and its container go."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            subprocess.run(["docker", "rm", "-f", self.container_name], capture_output=True, check=False)
        if self._watch.poll() is None:
            self._watch.terminate()

    def wait(self):
        try:
            self.runner_out = self.proc.communicate(timeout=JOB_TIMEOUT)[0]
        except BaseException:
            self.stop()
            raise
        self._reader.join(timeout=30)  # until docker removed the container (docker run --rm)
        self._watch.terminate()
        self._watch.wait()
        artifacts = os.path.join(self.pdd, "artifacts", self.ident)
        with open(os.path.join(artifacts, "rc")) as handle:
            self.rc = int(handle.read())
        with open(os.path.join(artifacts, "status")) as handle:
            self.status = handle.read().strip()
        with open(os.path.join(artifacts, "stdout")) as handle:
            self.stdout = handle.read()
        with open(os.path.join(artifacts, "command")) as handle:
            self.command = json.load(handle)["command"]
        self.events = []
        for path in glob.glob(os.path.join(artifacts, "job_events", "*.json")):
            with open(path) as handle:
                self.events.append(json.load(handle))
        self.events.sort(key=lambda e: e["counter"])
        stats = [e for e in self.events if e["event"] == "playbook_on_stats"]
        assert len(stats) == 1, (self.name, self.status, self.stdout[-3000:])
        self.stats = stats[0]["event_data"]
        # set_stats (per_host false): what AWX hands to the next node of a workflow
        self.artifact_data = self.stats.get("artifact_data") or {}
        return self

    @property
    def container(self):
        """Docker's own account of the job's container: id, image, when it started and ended."""
        actions = dict((e["Action"], e) for e in self.docker_events)
        assert {"create", "start", "die", "destroy"} <= set(actions), (self.name, [e["Action"] for e in self.docker_events])
        assert len(set(e["id"] for e in self.docker_events)) == 1, (self.name, self.docker_events)
        return {"id": actions["create"]["id"], "image": actions["create"]["Actor"]["Attributes"]["image"],
                "started": actions["start"]["timeNano"], "died": actions["die"]["timeNano"]}

    def hosts_touched(self):
        """The hosts the job ran a task on (runner's events)."""
        return set(e["event_data"]["host"] for e in self.events
                   if e["event"].startswith("runner_on_") and e["event_data"].get("host"))

    def explain(self):
        return "job %s: %s, rc %s\n%s" % (self.name, self.status, self.rc, self.stdout[-5000:])


@pytest.fixture(scope="module")
def lab(rollout_scale_lab):
    """The session's ten-device light lab; the three devices of these jobs start on light-1.1.0 (where
    test_rollout_scale.py left them; run alone, a rollout from the host puts them there first)."""
    lab = rollout_scale_lab
    lab.publish(LIGHT_GOOD, RELEASE)
    if any(lab.running_release(device)[0] != LIGHT_GOOD for device in DEVICES):
        run = lab.rollout(LIGHT_GOOD, "-e", "rollout_id=awx-setup", "-e", "rollout_targets=" + ":".join(DEVICES),
                          *waived())
        assert run.rc == 0, run.out[-4000:]
    for device in DEVICES:
        assert lab.running_release(device)[0] == LIGHT_GOOD, device
    return lab


# The state stores the jobs can share: a store's `vars` is the one dict of variables a job is told about it (its
# extravars), `envvars` what its environment gets (an AWX credential's injection). The suite runs the S3 store,
# which is what AWX on several execution nodes needs and where the jobs share no file at all;
# EDGEOPS_AWX_STORES="s3 directory" adds the directory store mounted into every job's container (AWX's "paths to
# expose to isolated jobs"), which the suite otherwise runs from a terminal only (test_rollout.py, the corpus): the
# whole sequence once more would cost about as much again.
AWX_STORES = os.environ.get("EDGEOPS_AWX_STORES", "s3").split()


@pytest.fixture(scope="module", params=AWX_STORES)
def store(request, tmp_path_factory):
    """The state store the jobs share, and nothing else."""
    if request.param == "directory":
        yield DirectoryStore(str(tmp_path_factory.mktemp("awx-store")))
        return
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Store("http://127.0.0.1:%d" % port, "edgeops-state")
    finally:
        server.stop()


class Awx(object):
    """Makes each job's private data directory as AWX does and runs it: project/ (the repository's files and the
    release manifest with its digests), inventory/ (the lab's connection and the fleet inventory over a production
    fleet file of DEVICES), env/ (extravars: the job's own and the store's; envvars; settings: process isolation in
    the EE; ssh_key: the machine credential, which ansible-runner hands to ssh-agent in the container)."""

    def __init__(self, lab, image, store, tmp):
        self.lab, self.image, self.store, self.tmp = lab, image, store, tmp
        self.jobs = []
        self.project = os.path.join(tmp, "project-template")
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                               check=True).stdout.decode().split("\0")
        for rel in files:
            src = os.path.join(REPO, rel)
            if not rel or not os.path.lexists(src):  # deleted in the work tree, not yet in git
                continue
            os.makedirs(os.path.dirname(os.path.join(self.project, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(self.project, rel), follow_symlinks=False)
        os.makedirs(os.path.join(self.project, "releases"))
        shutil.copyfile(lab.manifest(RELEASE), os.path.join(self.project, "releases", RELEASE + ".yml"))
        with open(lab.manifest(RELEASE), "rb") as handle:
            self.manifest_sha256 = hashlib.sha256(handle.read()).hexdigest()
        with open(lab.inventory) as handle:
            self.connection = yaml.safe_load(handle)["all"]["vars"]
        with open(os.path.join(lab.tmp, "fleet.yml")) as handle:
            fleet = yaml.safe_load(handle)
        fleet["devices"] = dict((name, fleet["devices"][name]) for name in DEVICES)
        fleet["rollout"].update(waves=[1, "100%"], salt="lab", environment="production")
        self.fleet = fleet
        with open(lab.vars_file) as handle:
            self.group_vars = dict((key, value) for key, value in yaml.safe_load(handle).items()
                                   if not key.startswith(("rollout_test_", "rollout_record_", "rollout_approvals_")))
        self.group_vars["registry_pki_dir"] = "/runner/inputs/pki/site01"

    def prepare(self, name, playbook, extravars, envvars=None):
        """The job's private data directory, and docker's events of its container watched; launch() runs it."""
        pdd = os.path.join(self.tmp, name)
        shutil.copytree(self.project, os.path.join(pdd, "project"), symlinks=True)
        inputs = os.path.join(pdd, "inputs")
        os.makedirs(os.path.join(inputs, "pki", "site01"))
        shutil.copyfile(os.path.join(self.lab.tmp, "pki", "site01", "ca.crt"), os.path.join(inputs, "pki", "site01", "ca.crt"))
        known_hosts = self.connection["ansible_ssh_common_args"].split("UserKnownHostsFile=")[1].split()[0]
        shutil.copyfile(known_hosts, os.path.join(inputs, "known_hosts"))
        write(os.path.join(inputs, "fleet.yml"), self.fleet)
        # The lab's connection, with the key from ssh-agent (the credential) and the lab's host keys pinned.
        connection = {"ansible_user": self.connection["ansible_user"],
                      "ansible_python_interpreter": self.connection["ansible_python_interpreter"],
                      "ansible_ssh_common_args": "-o UserKnownHostsFile=/runner/inputs/known_hosts -o StrictHostKeyChecking=yes"}
        write(os.path.join(pdd, "inventory", "group_vars", "all.yml"), dict(self.group_vars, **connection))
        write(os.path.join(pdd, "inventory", "edge.fleet.yml"),
              {"plugin": "edgeops.fleet.fleet", "fleet_file": "/runner/inputs/fleet.yml"})
        job_id = 100 + len(self.jobs) + 1
        # What AWX adds to every job's extra variables, then the job's own, then the store's.
        write(os.path.join(pdd, "env", "extravars"),
              dict({"awx_job_id": job_id, "awx_user_name": "awx-test", "awx_job_template_name": name},
                   **dict(extravars, **self.store.vars)))
        write(os.path.join(pdd, "env", "envvars"),
              dict({"ANSIBLE_HOST_KEY_CHECKING": "True"}, **dict(self.store.envvars, **(envvars or {}))))
        write(os.path.join(pdd, "env", "settings"), {
            "process_isolation": True, "process_isolation_executable": "docker", "container_image": self.image,
            # The lab's devices are published on the host's loopback (and the registry, Alertmanager). A container on the
            # host's network has the host's name: each job's gets one of its own, which the lock it takes records.
            "container_options": ["--network=host", "--hostname=" + hostname(job_id)],
            "container_volume_mounts": self.store.mounts,
            "suppress_ansible_output": True})
        with open(self.connection["ansible_ssh_private_key_file"]) as handle:
            key = handle.read()
        with open(os.path.join(pdd, "env", "ssh_key"), "w") as handle:
            handle.write(key)
        os.chmod(os.path.join(pdd, "env", "ssh_key"), 0o600)
        job = Job(name, pdd, playbook, job_id)
        self.jobs.append(job)
        return job

    def run(self, name, playbook, extravars, envvars=None):
        job = self.prepare(name, playbook, extravars, envvars)
        time.sleep(0.5)  # docker's event stream is open before the container can be made
        job.launch()
        return job.wait()

    def rollout_vars(self, **more):
        return dict({"rollout_release_file": "/runner/project/releases/%s.yml" % RELEASE}, **more)

    def assert_ran_in_a_new_container(self, job):
        container = job.container
        assert container["image"] == self.image, container
        docker = job.command[:job.command.index(self.image)]
        assert docker[:3] == ["docker", "run", "--rm"] and "--network=host" in docker, job.command
        assert docker[docker.index("--name") + 1] == job.container_name, job.command
        assert "ansible-playbook" in " ".join(job.command[job.command.index(self.image):]), job.command
        earlier = [j for j in self.jobs if j is not job and j.docker_events]
        assert container["id"] not in [j.container["id"] for j in earlier], "the job reused a container"
        gone = subprocess.run(["docker", "container", "inspect", container["id"]], capture_output=True, check=False)
        assert gone.returncode != 0, "the job's container is still there"


def hostname(job_id):
    return "awx-job-%d" % job_id


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        yaml.safe_dump(data, handle)


@pytest.fixture(scope="module")
def awx(lab, ee_image, store, tmp_path_factory):
    return Awx(lab, ee_image, store, str(tmp_path_factory.mktemp("awx-jobs")))


def test_the_execution_environment_has_what_the_jobs_need(ee_image):
    script = ("ansible-galaxy collection list --format json; python3 -c 'import boto3, botocore, hvac'; "
              "command -v ssh ssh-agent skopeo ansible-runner ansible-playbook")
    proc = subprocess.run(["docker", "run", "--rm", ee_image, "bash", "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    listed = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
    collections = {}
    for path in listed.values():
        collections.update(path)
    for name in ("edgeops.fleet", "community.docker", "ansible.posix", "community.general", "community.crypto",
                 "amazon.aws", "community.hashi_vault"):
        assert name in collections, (name, sorted(collections))
    programs = ["ssh", "ssh-agent", "skopeo", "ansible-runner", "ansible-playbook"]
    assert [os.path.basename(p) for p in proc.stdout.split()[-5:]] == programs, proc.stdout[-500:]
    labels = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", ee_image],
                            capture_output=True, text=True, check=True).stdout
    assert ee_image.endswith("-" + json.loads(labels)["org.edgeops.ee.recipe"]), (ee_image, labels)


def test_an_approval_job_releases_the_lock_into_the_shared_store(awx, store):
    job = awx.run("approve", "playbooks/rollout_approve.yml", awx.rollout_vars(rollout_approver="alice"))
    assert job.rc == 0 and job.status == "successful", job.explain()
    awx.assert_ran_in_a_new_container(job)
    approval = store.approval(RELEASE)
    assert approval and approval["approver"] == "alice", approval
    assert approval["manifest_sha256"] == awx.manifest_sha256, approval
    assert "%s approved by alice" % RELEASE in job.stdout, job.explain()
    assert job.hosts_touched() == {"localhost"}, job.hosts_touched()


def test_two_rollouts_at_once_one_takes_the_lock_and_pauses_the_other_is_refused(awx, store, lab):
    """Launched together on the same devices, both past their checks: the lock decides. The one that takes it finds
    the victim frozen while staging and pauses (unreachable: pause), keeping the devices; the other is refused before
    any device, naming the holder."""
    frozen = subprocess.run(["docker", "pause", "%s-%s" % (lab.name, VICTIM)], capture_output=True, text=True, check=False)
    assert frozen.returncode == 0, frozen.stderr
    racing = []
    try:
        racing += [awx.prepare(rollout_id, "playbooks/rollout.yml",
                               awx.rollout_vars(rollout_id=rollout_id, rollout_policy=POLICY),
                               {"ANSIBLE_TIMEOUT": str(CUT_TIMEOUT)}) for rollout_id in RACERS]
        time.sleep(0.5)  # docker's event streams are open
        for job in racing:
            job.launch()
        jobs = dict((job.name, job.wait()) for job in racing)
    finally:
        for job in racing:
            job.stop()
        subprocess.run(["docker", "unpause", "%s-%s" % (lab.name, VICTIM)], capture_output=True, check=False)
    records = dict((rollout_id, store.record(rollout_id)) for rollout_id in RACERS)
    winners = [rollout_id for rollout_id in RACERS if records[rollout_id] is not None]
    assert len(winners) == 1, dict((n, j.explain()) for n, j in jobs.items())
    winner, loser = winners[0], [r for r in RACERS if r not in winners][0]
    awx.winner, awx.winner_job = winner, jobs[winner]
    for job in jobs.values():
        awx.assert_ran_in_a_new_container(job)
        assert job.artifact_data["edgeops_checked_manifest"]["sha256"] == awx.manifest_sha256, job.artifact_data
    # At once: the refused job's container ran while the other's did.
    assert jobs[winner].container["started"] < jobs[loser].container["died"], (jobs[winner].container, jobs[loser].container)
    assert jobs[loser].container["started"] < jobs[winner].container["died"], (jobs[winner].container, jobs[loser].container)

    # The winner: paused while staging, its lock kept (paused), held by its own container, approved through the store.
    job, record, lock = jobs[winner], records[winner], store.lock(winner)
    assert job.rc != 0 and job.status == "failed", job.explain()
    assert record["status"] == "paused", record
    assert "%s unreachable while staging (unreachable: pause)" % VICTIM in record["reason"], record["reason"]
    assert record["approval"]["approver"] == "alice", record["approval"]
    assert sorted(record["devices"]) == DEVICES, record["devices"]
    stats = job.artifact_data["edgeops_rollout_" + winner.replace("-", "_")]
    assert stats["status"] == "paused" and stats["release"] == RELEASE, stats
    assert stats["counts"] == {"staged": 2, "unreachable": 1}, stats
    assert lock and lock["state"] == "paused" and lock["devices"] == DEVICES, lock
    assert lock["holder"]["controller"] == hostname(job.job_id), lock  # the hostname of the job's container
    assert lock["holder"]["awx_job_id"] == str(job.job_id), lock
    for device in DEVICES:  # nothing switched: the next job resumes from staging
        assert lab.running_release(device)[0] == LIGHT_GOOD, device

    # The loser: refused at the lock, naming the holder; no device touched, no record, no lock, no set_stats of its own.
    job = jobs[loser]
    assert job.rc != 0 and job.status == "failed", job.explain()
    assert "another rollout is running on these devices: rollout %s of %s (" % (winner, RELEASE) in job.stdout, job.explain()
    holder = "controller %s, user awx-test, awx_job_id %d) holds %s" % (
        hostname(jobs[winner].job_id), jobs[winner].job_id, ", ".join(DEVICES))
    assert holder in job.stdout, job.explain()
    assert job.hosts_touched() == {"localhost"}, job.hosts_touched()
    assert set(job.stats["processed"]) == {"localhost"}, job.stats
    assert store.lock(loser) is None and "edgeops_rollout_" + loser.replace("-", "_") not in job.artifact_data


def test_the_workflows_alert_job_tells_alertmanager_what_the_failed_rollout_handed_on(awx, lab):
    """The workflow's failure node: its job gets the failed rollout node's set_stats as variables (as AWX passes a
    node's artifacts on) and posts EdgeopsRolloutFailed to the lab hub's real Alertmanager."""
    winner = awx.winner
    extravars = dict(awx.winner_job.artifact_data, awx_workflow_job_id=900, awx_workflow_job_name="rollout with approval",
                     **awx.rollout_vars())
    job = awx.run("alert", "playbooks/rollout_alert.yml", extravars)
    assert job.rc == 0 and job.status == "successful", job.explain()
    awx.assert_ran_in_a_new_container(job)
    failed = [a for a in lab.alerts(RELEASE) if a["labels"].get("alertname") == "EdgeopsRolloutFailed"]
    assert [(a["labels"]["rollout"], a["labels"]["status"]) for a in failed] == [(winner, "paused")], failed
    description = failed[0]["annotations"]["description"]
    assert "%s unreachable while staging" % VICTIM in description and "2 staged, 1 unreachable" in description, description
    assert "AWX workflow job 900 (rollout with approval)" in description, description
    assert job.hosts_touched() == {"localhost"}, job.hosts_touched()


def test_the_paused_rollout_resumes_in_a_new_container_and_completes(awx, store, lab):
    winner = awx.winner
    job = awx.run("resume", "playbooks/rollout.yml",
                  awx.rollout_vars(rollout_id=winner, rollout_action="resume", rollout_policy=POLICY))
    assert job.rc == 0 and job.status == "successful", job.explain()
    awx.assert_ran_in_a_new_container(job)
    record = store.record(winner)
    assert record["status"] == "completed", record
    assert record["waves"][0]["devices"] == [SCALE_CANARY] and [w["wave"] for w in record["waves"]] == [0, 1], record["waves"]
    stats = job.artifact_data["edgeops_rollout_" + winner.replace("-", "_")]
    assert stats["status"] == "completed" and stats["counts"] == {"confirmed": 3}, stats
    assert store.lock(winner) is None, store.lock(winner)
    assert job.hosts_touched() == set(DEVICES) | {"localhost"}, job.hosts_touched()
    for device in DEVICES:
        running, state = lab.running_release(device)
        assert running == RELEASE and state["current"] == state["confirmed"], (device, state)


def test_the_rollout_rolls_back_in_a_new_container(awx, store, lab):
    winner = awx.winner
    job = awx.run("rollback", "playbooks/rollout.yml", awx.rollout_vars(rollout_id=winner, rollout_action="rollback"))
    assert job.rc == 0 and job.status == "successful", job.explain()
    awx.assert_ran_in_a_new_container(job)
    record = store.record(winner)
    assert record["status"] == "rolled-back", record
    stats = job.artifact_data["edgeops_rollout_" + winner.replace("-", "_")]
    assert stats["status"] == "rolled-back" and sum(stats["counts"].values()) == 3, stats
    assert store.lock(winner) is None, store.lock(winner)
    for device in DEVICES:
        running, state = lab.running_release(device)
        assert running == LIGHT_GOOD and state["current"] == state["confirmed"], (device, state)


def test_the_incidents_job_keeps_what_the_devices_logged_in_the_store_and_fetches_only_what_is_new(awx, store, lab):
    """playbooks/generations/collect_incidents.yml as a job: every device's incidents (the rollback logged one on each)
    land in the store; a second job, in a container of its own with nothing but the store, adds nothing."""
    logged = dict((device, lab.listing(device)["incidents"]) for device in DEVICES)
    assert all(logged.values()), logged  # at least the rollback's
    job = awx.run("incidents", "playbooks/generations/collect_incidents.yml", {"incidents_dir": "/runner/incidents"})
    assert job.rc == 0 and job.status == "successful", job.explain()
    awx.assert_ran_in_a_new_container(job)
    for device in DEVICES:
        if isinstance(store, S3Store):
            lines = "".join(store.text(key) for key in store.keys("incidents/%s/" % device)).splitlines()
        else:
            pytest.skip("the directory store keeps incidents in incidents_dir, inside the job's container")
        assert [json.loads(line) for line in lines] == logged[device], device
    before = store.keys("incidents/")
    again = awx.run("incidents-again", "playbooks/generations/collect_incidents.yml", {"incidents_dir": "/runner/incidents"})
    assert again.rc == 0 and again.status == "successful", again.explain()
    assert store.keys("incidents/") == before
    assert again.stats["changed"] == {}, again.stats


def test_every_job_had_a_container_of_its_own_and_no_secret_in_the_artifacts(awx):
    expected = ["approve"] + list(RACERS) + ["alert", "resume", "rollback", "incidents", "incidents-again"]
    assert [job.name for job in awx.jobs] == expected, [j.name for j in awx.jobs]
    ids = [job.container["id"] for job in awx.jobs]
    assert len(set(ids)) == len(awx.jobs), ids
    texts = []
    for job in awx.jobs:
        texts.append(job.runner_out)
        for root, _dirs, files in os.walk(os.path.join(job.pdd, "artifacts")):
            for name in files:
                with open(os.path.join(root, name), errors="replace") as handle:
                    texts.append(handle.read())
    assert len(texts) > 5 * len(awx.jobs)
    for key, secret in SECRETS.items():
        found = any(secret in text for text in texts)  # a boolean: a failing assert must not print the value
        assert not found, "the %s secret is in a job's artifacts or output" % key
