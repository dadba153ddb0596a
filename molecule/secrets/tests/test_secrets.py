# -*- coding: utf-8 -*-
"""Verify the secrets role on a real lab device (values: molecule.yml's group_vars).

Values are only ever compared inside this process (as sha256 digests, so that a failing assertion prints no value);
every command sent to the device is free of them.
"""

import hashlib
import json
import os

import pytest
import yaml

SECRETS_DIR = "/run/edgeops/secrets"
CREDENTIALS_DIR = "/etc/edgeops/credentials"
CONTAINER = "edgeops-reader-1"
NAMES = ["api_token", "model_key"]


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def values():
    # Read from molecule.yml itself: asking Ansible (ansible-inventory) would print them into the Ansible log.
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "molecule.yml")) as handle:
        variables = yaml.safe_load(handle)["provisioner"]["inventory"]["group_vars"]["all"]
    return {"api_token": variables["vault_api_token"], "model_key": variables["secrets_vault_values"]["model_key"]}


def found(value, text):
    """Whether value is in text; a bare `assert value not in text` would print the value when it fails."""
    return value in text


@pytest.fixture(scope="module")
def inspect(host):
    return json.loads(host.check_output("docker inspect %s" % CONTAINER))[0]


@pytest.mark.parametrize("name", NAMES)
def test_each_secret_is_a_0400_file_of_the_workload_user_on_tmpfs(host, values, name):
    secret = host.file("%s/%s" % (SECRETS_DIR, name))
    assert secret.is_file
    assert secret.mode == 0o400
    assert secret.uid == 10001 and secret.gid == 0
    assert secret.sha256sum == sha256(values[name]), "the file does not hold the value from the source"
    assert host.check_output("findmnt -n -o FSTYPE --target %s" % SECRETS_DIR) == "tmpfs"
    assert host.file(SECRETS_DIR).mode == 0o711


@pytest.mark.parametrize("name", NAMES)
def test_each_secret_is_mounted_read_only_into_the_container(host, values, inspect, name):
    mounts = dict((m["Destination"], m) for m in inspect["Mounts"])
    mount = mounts["/run/secrets/%s" % name]
    assert mount["Source"] == "%s/%s" % (SECRETS_DIR, name)
    assert mount["RW"] is False
    # The workload's user reads it; nobody in the container can write it.
    inside = host.check_output("docker exec %s /bin/busybox sha256sum /run/secrets/%s" % (CONTAINER, name)).split()[0]
    assert inside == sha256(values[name])
    write = host.run("docker exec %s /bin/sh -c 'echo x > /run/secrets/%s'" % (CONTAINER, name))
    assert write.rc != 0
    assert inspect["Config"]["User"] == "10001:10001"


def test_the_container_is_labelled_with_the_fingerprint_of_each_encrypted_value(host, inspect):
    label = inspect["Config"]["Labels"]["org.edgeops.secrets"]
    pairs = dict(pair.split("=") for pair in label.split(","))
    assert sorted(pairs) == NAMES
    for name in NAMES:
        cred = host.file("%s/%s.cred" % (CREDENTIALS_DIR, name))
        assert pairs[name] == cred.sha256sum[:16]


def test_the_values_are_encrypted_at_rest_and_restored_at_boot(host, values):
    assert host.file(CREDENTIALS_DIR).mode == 0o700
    assert host.file(CREDENTIALS_DIR).uid == 0
    for name in NAMES:
        assert host.file("%s/%s.owner" % (CREDENTIALS_DIR, name)).content_string.strip() == "10001"
    assert host.service("edgeops-secrets.service").is_enabled
    assert host.file("/usr/local/sbin/edgeops-secrets-restore").mode == 0o755


def test_no_value_in_inspect_logs_generations_journal_or_the_controller_log(host, values):
    collected = host.check_output(
        "{ docker inspect $(docker ps -aq); for c in $(docker ps -aq); do docker logs $c 2>&1; done; "
        "find /var/lib/edgeops /etc/edgeops /var/log -type f -exec cat {} + 2>/dev/null; "
        "journalctl --no-pager -q 2>/dev/null | tail -n 20000; } | base64 -w0")
    import base64
    text = base64.b64decode(collected).decode("utf-8", "replace")
    assert len(text) > 10000
    controller_log = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "ansible.log")
    with open(controller_log) as handle:
        log = handle.read()
    assert "Read each secret from its source" in log
    for name, value in values.items():
        assert not found(value, text), "secret %s found on the device outside its file" % name
        assert not found(value, log), "secret %s found in the controller's Ansible log" % name
