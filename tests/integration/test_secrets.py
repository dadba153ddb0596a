# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets on a real lab device: three sources, delivery, rotation that succeeds and that fails, and no leak.

- ansible-vault: real (a vars file encrypted by ``ansible-vault`` with a password file).
- AWS Secrets Manager: STAND-IN - moto's server (``moto_server``) on 127.0.0.1, reached by the real
  ``amazon.aws.secretsmanager_secret`` lookup (boto3) through ``secrets_aws_endpoint_url``.
- HashiCorp Vault: STAND-IN - ``tests/support/secrets/kv2_standin.py``, the KV v2 read API on 127.0.0.1 (no Vault
  server is installable here), reached by the real ``community.hashi_vault.vault_kv2_get`` lookup (hvac).

The workload (busybox) is unhealthy while its api_token says "rejected" (the device's own gate fails the switch);
the rotation's extra probe fails while it says "revoked" (the controller's gate fails after the switch). Every play
output, the ansible-runner artifacts of the converge and the device's logs are searched for every value at the end.
The tests run in order and share the lab.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from conftest import BIN, LAB_PACKAGES, REPO, ansible, lab_args

sys.path.insert(0, os.path.join(REPO, "tests", "support", "secrets"))
from kv2_standin import KV2StandIn  # noqa: E402

LAB = "edgeops-sectest"
PORT_BASE = 43650
MOTO_PORT = 43690
KV2_PORT = 43691
DEVICE = "site01-dev01"
CONTAINER = "%s-%s" % (LAB, DEVICE)
AWS_SECRET_ID = "edge/site01/model"
# Test-only values; none may appear in any output, artifact or device log.
VALUES = {
    "vault_1": "tok-Vq8Lm3Xz6Rb1Nw",
    "aws_1": "key-Ad5Gh2Jk9Pq4Ts",
    "aws_2": "key-Bw7Cy1Dz4Ex8Fv",
    "hashi_1": "pw-Hn6Jm2Kp8Lq3Rs",
    "hashi_2": "pw-Mt9Nu4Ov7Pw2Qx",
    "revoked": "tok-revoked-Sy5Tz8Ua",
    "rejected": "tok-rejected-Vb3Wc6Xd",
}
STAND_IN_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "VAULT_TOKEN": "stand-in-token"}


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def dexec(*argv, timeout=120):
    return subprocess.run(["docker", "exec", CONTAINER] + list(argv), capture_output=True, text=True,
                          timeout=timeout, check=False)


def device_file_sha(name):
    out = dexec("sha256sum", "/run/edgeops/secrets/%s" % name)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[0]


def container_file_sha(name):
    out = dexec("docker", "exec", "edgeops-reader-1", "/bin/busybox", "sha256sum", "/run/secrets/%s" % name)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[0]


def listing():
    out = dexec("edgeops-gen", "list")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def kept_aside():
    return dexec("sh", "-c", "ls /etc/edgeops/credentials/previous").stdout.split()


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("nothing listens on 127.0.0.1:%d" % port)


class Lab(object):
    def __init__(self, tmp):
        self.tmp = tmp
        self.inventory = os.path.join(tmp, "hosts.yml")
        self.vars_file = os.path.join(tmp, "vars.yml")
        self.vault_file = os.path.join(tmp, "vault.yml")
        self.vault_password = os.path.join(tmp, "vault-password")
        self.release = os.path.join(tmp, "secrets-test-1.yml")
        self.artifacts = os.path.join(tmp, "runner-artifacts")
        self.lab_vars = lab_args(LAB, PORT_BASE, self.inventory, lab_devices_per_site=1, lab_hubs=False,
                                 lab_image_packages=LAB_PACKAGES)
        self.outputs = []
        self.aws = None
        self.kv2 = None

    def write_vars(self):
        data = {
            "secrets_test_release": self.release,
            "workloads_release_file": self.release,
            "secrets_definitions": [
                {"name": "api_token", "var": "vault_api_token"},
                {"name": "model_key", "source": "aws", "secret_id": AWS_SECRET_ID, "json_key": "api_key"},
                {"name": "telemetry_password", "source": "hashi_vault", "path": "edge/telemetry", "field": "password"},
            ],
            "secrets_aws_region": "eu-central-1",
            "secrets_aws_endpoint_url": "http://127.0.0.1:%d" % MOTO_PORT,
            "secrets_hashi_vault_url": "http://127.0.0.1:%d" % KV2_PORT,
            "secrets_rotate_soak": 3,
            "secrets_rotate_confirm_timeout": 90,
            # The controller's gate after the switch: fails while the token says "revoked".
            "secrets_rotate_health_checks": [
                # A generous timeout: `docker exec` takes seconds on a loaded 2-CPU machine.
                {"name": "token-not-revoked", "type": "command", "retries": 2, "interval": 1, "timeout": 60,
                 "argv": ["docker", "exec", "edgeops-reader-1", "/bin/sh", "-c", "! grep -q revoked /run/secrets/api_token"]}],
        }
        with open(self.vars_file, "w") as handle:
            yaml.safe_dump(data, handle)

    def write_vault(self, api_token):
        """A real ansible-vault file (AES256 with the password file) holding vault_api_token."""
        if not os.path.exists(self.vault_password):
            with open(self.vault_password, "w") as handle:
                handle.write("lab-vault-password-7Hq2\n")
            os.chmod(self.vault_password, 0o600)
        with open(self.vault_file, "w") as handle:
            yaml.safe_dump({"vault_api_token": api_token}, handle)
        run = ansible("ansible-vault", "encrypt", "--vault-password-file", self.vault_password, self.vault_file)
        assert run.rc == 0, run.out
        with open(self.vault_file) as handle:
            assert handle.read().startswith("$ANSIBLE_VAULT;1.1;AES256")

    def args(self):
        return ["-i", self.inventory, "-e", "@" + self.vars_file, "-e", "@" + self.vault_file,
                "--vault-password-file", self.vault_password]

    def playbook(self, playbook, *args):
        env_backup = dict(os.environ)
        os.environ.update(STAND_IN_CREDENTIALS)
        try:
            run = ansible("ansible-playbook", *(self.args() + [playbook] + list(args)))
        finally:
            os.environ.clear()
            os.environ.update(env_backup)
        self.outputs.append(run.out)
        return run

    def rotate(self, *names):
        return self.playbook("playbooks/secrets_rotate.yml", "-e", json.dumps({"secrets_rotate": list(names)}))

    def runner(self, playbook):
        """A playbook through ansible-runner's Python API, its artifacts kept in self.artifacts."""
        import ansible_runner
        env = dict(STAND_IN_CREDENTIALS, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   PATH=BIN + os.pathsep + os.environ["PATH"])
        private = os.path.join(self.tmp, "runner")
        if not os.path.isdir(private):
            os.makedirs(private)
        result = ansible_runner.run(
            private_data_dir=private, project_dir=REPO, artifact_dir=self.artifacts,
            playbook=os.path.join(REPO, playbook), inventory=self.inventory,
            cmdline=" ".join(["-e", "@" + self.vars_file, "-e", "@" + self.vault_file,
                              "--vault-password-file", self.vault_password]),
            envvars=env, quiet=True)
        with open(os.path.join(result.config.artifact_dir, "stdout")) as handle:
            out = handle.read()
        self.outputs.append(out)
        return result, out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(str(tmp_path_factory.mktemp("secrets")))
    lab.write_vars()
    lab.write_vault(VALUES["vault_1"])

    def down():
        return ansible("ansible-playbook", "playbooks/lab/down.yml", *lab.lab_vars)

    # AWS Secrets Manager stand-in: moto's server on loopback, the secret created with boto3.
    moto = subprocess.Popen([os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # HashiCorp Vault stand-in: the KV v2 read API on loopback.
    kv2 = KV2StandIn(STAND_IN_CREDENTIALS["VAULT_TOKEN"], port=KV2_PORT)
    try:
        kv2.__enter__()
        kv2.put("edge/telemetry", {"user": "edge", "password": VALUES["hashi_1"]})
        lab.kv2 = kv2
        wait_port(MOTO_PORT)
        import boto3
        lab.aws = boto3.client("secretsmanager", endpoint_url="http://127.0.0.1:%d" % MOTO_PORT,
                               region_name="eu-central-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        lab.aws.create_secret(Name=AWS_SECRET_ID, SecretString=json.dumps({"api_key": VALUES["aws_1"], "user": "edge"}))
        down()
        up = ansible("ansible-playbook", "playbooks/lab/up.yml", *lab.lab_vars)
        assert up.rc == 0, up.out[-3000:]
        setup = lab.playbook("tests/integration/playbooks/secrets_setup.yml")
        assert setup.rc == 0, setup.out[-5000:]
        yield lab
    finally:
        down()
        kv2.__exit__(None, None, None)
        moto.terminate()
        moto.wait(timeout=30)


def test_secrets_from_vault_aws_and_hashi_vault_reach_the_workload_read_only(lab):
    result, out = lab.runner("tests/integration/playbooks/secrets_converge.yml")
    assert result.rc == 0, out[-5000:]
    assert os.listdir(lab.artifacts), "ansible-runner wrote no artifacts"
    expected = {"api_token": VALUES["vault_1"], "model_key": VALUES["aws_1"], "telemetry_password": VALUES["hashi_1"]}
    for name, value in expected.items():
        assert device_file_sha(name) == sha256(value), name
        assert container_file_sha(name) == sha256(value), name
        stat = dexec("stat", "-c", "%a %u %g", "/run/edgeops/secrets/%s" % name).stdout.split()
        assert stat == ["400", "10001", "0"], (name, stat)
    assert dexec("findmnt", "-n", "-o", "FSTYPE", "--target", "/run/edgeops/secrets").stdout.strip() == "tmpfs"
    inspect = json.loads(dexec("docker", "inspect", "edgeops-reader-1").stdout)[0]
    mounts = dict((m["Destination"], m) for m in inspect["Mounts"])
    assert all(not mounts["/run/secrets/%s" % name]["RW"] for name in expected)
    assert dexec("docker", "exec", "edgeops-reader-1", "/bin/sh", "-c", "echo x > /run/secrets/api_token").returncode != 0
    state = listing()
    assert state["current"] == state["confirmed"]
    # (Idempotence of the converge: molecule/secrets.)


def test_a_source_that_fails_is_named_without_any_value(lab):
    run = lab.playbook("tests/integration/playbooks/secrets_converge.yml",
                       "-e", json.dumps({"secrets_definitions": [
                           {"name": "api_token", "var": "vault_api_token"},
                           {"name": "model_key", "source": "aws", "secret_id": "edge/site01/missing"}]}))
    assert run.rc != 0
    assert "secret model_key (source aws, secret_id edge/site01/missing) could not be read" in run.out, run.out[-3000:]


def test_rotation_stages_the_new_values_switches_and_retires_the_old_ones(lab):
    before = listing()
    lab.aws.put_secret_value(SecretId=AWS_SECRET_ID, SecretString=json.dumps({"api_key": VALUES["aws_2"], "user": "edge"}))
    lab.kv2.put("edge/telemetry", {"user": "edge", "password": VALUES["hashi_2"]})
    run = lab.rotate("model_key", "telemetry_password")
    assert run.rc == 0, run.out[-5000:]
    for name, value in (("model_key", VALUES["aws_2"]), ("telemetry_password", VALUES["hashi_2"])):
        assert device_file_sha(name) == sha256(value), name
        assert container_file_sha(name) == sha256(value), name
    assert container_file_sha("api_token") == sha256(VALUES["vault_1"])
    after = listing()
    assert after["current"] == after["confirmed"] and after["current"] > before["current"], after
    assert kept_aside() == []


@pytest.mark.parametrize("bad, step", [("revoked", "health gate"), ("rejected", "switch")])
def test_a_failing_new_secret_puts_the_old_value_and_generation_back(lab, bad, step):
    before = listing()
    lab.write_vault(VALUES[bad])
    try:
        run = lab.rotate("api_token")
    finally:
        lab.write_vault(VALUES["vault_1"])
    assert run.rc != 0, run.out[-3000:]
    assert "secret rotation of api_token on %s failed at %s" % (DEVICE, step) in run.out, run.out[-5000:]
    assert "the previous value(s) of api_token are back and generation %d runs again (health passed)" \
        % before["current"] in " ".join(run.out.split()), run.out[-3000:]
    assert device_file_sha("api_token") == sha256(VALUES["vault_1"])
    assert container_file_sha("api_token") == sha256(VALUES["vault_1"])
    after = listing()
    assert after["current"] == after["confirmed"] == before["current"], after
    assert kept_aside() == []
    health = dexec("docker", "inspect", "--format", "{{.State.Health.Status}}", "edgeops-reader-1").stdout.strip()
    assert health == "healthy"
    # The restored value is also the one encrypted at rest (what a reboot restores).
    label = json.loads(dexec("docker", "inspect", "edgeops-reader-1").stdout)[0]["Config"]["Labels"]["org.edgeops.secrets"]
    fingerprint = dict(pair.split("=") for pair in label.split(","))["api_token"]
    cred = dexec("sha256sum", "/etc/edgeops/credentials/api_token.cred").stdout.split()[0]
    assert cred[:16] == fingerprint


def test_no_value_in_any_output_artifact_or_device_log(lab):
    # Bytes: /var/log/journal holds binary files (whose small messages are stored as they are).
    device = subprocess.run(
        ["docker", "exec", CONTAINER, "sh", "-c",
         "docker inspect $(docker ps -aq); for c in $(docker ps -aq); do docker logs $c 2>&1; done; "
         "find /var/lib/edgeops /etc/edgeops /var/log -type f -exec cat {} + 2>/dev/null; "
         "journalctl --no-pager -q 2>/dev/null; true"],
        capture_output=True, timeout=300, check=False).stdout.decode("utf-8", "replace")
    assert len(device) > 10000
    artifacts = []
    for root, _dirs, files in os.walk(lab.artifacts):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                artifacts.append(handle.read().decode("utf-8", "replace"))
    assert any("Read each secret from its source" in text for text in artifacts)
    outputs = "\n".join(lab.outputs)
    assert "secret rotation of api_token" in outputs
    for key, value in VALUES.items():
        # Booleans only: `assert value not in text` would print the value when it fails.
        in_outputs, in_artifacts, on_device = value in outputs, any(value in t for t in artifacts), value in device
        assert not in_outputs, "%s found in a play's output" % key
        assert not in_artifacts, "%s found in ansible-runner's artifacts" % key
        assert not on_device, "%s found in the device's logs, inspect output or state" % key
