# -*- coding: utf-8 -*-
"""Verify the secrets role on a real lab device (values: molecule.yml's group_vars).

Values are only ever compared inside this process (as sha256 digests, so that a failing assertion prints no value);
every command sent to the device is free of them.
"""

import hashlib
import json
import os
import subprocess
import time

import pytest
import yaml

SECRETS_DIR = "/run/edgeops/secrets"
CREDENTIALS_DIR = "/etc/edgeops/credentials"
CONTAINER = "edgeops-reader-1"
NAMES = ["api_token", "model_key"]
MOLECULE_YML = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "molecule.yml")
# Seconds a boot may take (systemd running, SSH answering, the workload healthy again) on a loaded 2-CPU machine.
BOOT_DEADLINE = 120


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def scenario_vars():
    # Read from molecule.yml itself: asking Ansible (ansible-inventory) would print the values into the Ansible log.
    with open(MOLECULE_YML) as handle:
        return yaml.safe_load(handle)["provisioner"]["inventory"]["group_vars"]["all"]


@pytest.fixture(scope="module")
def values():
    variables = scenario_vars()
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


def controller(*argv, timeout=60):
    """A command on the controller (docker against the lab container), never raising on a timeout."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, -1, "", "timed out after %s s" % timeout)


def power_cycle(container):
    """Cut the device's power (SIGKILL to every process, /run's tmpfs gone), switch it on again and wait, with a
    deadline, for systemd to finish the boot."""
    for argv in (["docker", "kill", "-s", "KILL", container], ["docker", "start", container]):
        out = controller(*argv)
        assert out.returncode == 0, (argv, out.stderr)
    deadline = time.monotonic() + BOOT_DEADLINE
    while True:
        left = deadline - time.monotonic()
        out = controller("docker", "exec", container, "systemctl", "is-system-running", "--wait",
                         timeout=max(1, int(left)))
        state = out.stdout.strip() or out.stderr.strip()
        if state in ("running", "degraded") or left <= 0:
            break
        time.sleep(1)
    assert state in ("running", "degraded"), "%s did not finish booting in %s s: %s" % (container, BOOT_DEADLINE, state)


def wait_until(check, what):
    """Call check() until it returns a true value (exceptions count as not yet), for up to BOOT_DEADLINE s."""
    deadline = time.monotonic() + BOOT_DEADLINE
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the SSH connection of the previous boot, a container not started yet
            last = exc
        else:
            if last:
                return last
        time.sleep(1)
    pytest.fail("%s: not within %s s (last: %r)" % (what, BOOT_DEADLINE, last))


def test_the_values_are_encrypted_at_rest_and_restored_at_boot(host, values):
    assert host.file(CREDENTIALS_DIR).mode == 0o700
    assert host.file(CREDENTIALS_DIR).uid == 0
    for name in NAMES:
        assert host.file("%s/%s.owner" % (CREDENTIALS_DIR, name)).content_string.strip() == "10001"
    assert host.service("edgeops-secrets.service").is_enabled
    assert host.file("/usr/local/sbin/edgeops-secrets-restore").mode == 0o755

    # A file of this boot in the secrets directory: gone after the power cycle, so what is there then is restored.
    marker = "%s/.before-power-cycle" % SECRETS_DIR
    host.check_output("touch %s" % marker)
    container = "%s-%s" % (scenario_vars()["lab_name"], host.backend.get_hostname())
    started = controller("docker", "inspect", "-f", "{{.State.StartedAt}}", container).stdout.strip()
    power_cycle(container)
    assert controller("docker", "inspect", "-f", "{{.State.StartedAt}}", container).stdout.strip() != started
    wait_until(lambda: host.run("true").rc == 0, "SSH to the device after the boot")

    assert not host.file(marker).exists, "the secrets directory survived the power cycle: nothing was restored"
    assert host.service("edgeops-secrets.service").is_running  # active: the oneshot ran in this boot
    assert host.file(SECRETS_DIR).is_directory, "no %s after the boot: nothing was restored" % SECRETS_DIR
    assert host.check_output("findmnt -n -o FSTYPE --target %s" % SECRETS_DIR) == "tmpfs"
    assert host.file(SECRETS_DIR).mode == 0o711
    for name in NAMES:
        secret = host.file("%s/%s" % (SECRETS_DIR, name))
        assert secret.is_file and secret.mode == 0o400 and secret.uid == 10001 and secret.gid == 0, name
        assert secret.sha256sum == sha256(values[name]), "%s does not hold its value after the boot" % name

    # The workload came back by itself (restart policy, the generation's boot recovery), healthy: its health check
    # reads api_token, and it reads both files through its read-only mounts.
    def healthy():
        state = json.loads(host.check_output("docker inspect %s" % CONTAINER))[0]["State"]
        return state["Running"] and state.get("Health", {}).get("Status") == "healthy"

    wait_until(healthy, "%s healthy after the boot" % CONTAINER)
    for name in NAMES:
        inside = host.check_output("docker exec %s /bin/busybox sha256sum /run/secrets/%s" % (CONTAINER, name))
        assert inside.split()[0] == sha256(values[name]), "the workload reads another %s after the boot" % name


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
