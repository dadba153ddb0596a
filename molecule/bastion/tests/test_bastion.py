# -*- coding: utf-8 -*-
"""Verify the bastion on the lab hub, and that the devices are reachable only through it.

The `host` fixture is the hub (molecule's inventory holds nothing else). What the controller sees
is checked with real ssh and ansible runs from here, on 127.0.0.1 only (the lab's network rule).
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid

import pytest

LAB = "molecule-bastion"
HUB_PORT = 43700
DEVICES = ["site01-dev01", "site01-dev02"]
TARGETS = ["site01-dev01:22", "site01-dev02:22"]
PROJECT = os.environ["MOLECULE_PROJECT_DIRECTORY"]
EPHEMERAL = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
SCENARIO = os.path.join(PROJECT, "molecule", "bastion")
STATE = os.path.join(os.path.expanduser("~"), ".cache", "edgeops-lab", LAB)
SSH_CONFIG = os.path.join(EPHEMERAL, "ssh_config")
JUMP_KEY = os.path.join(EPHEMERAL, "jump_ed25519")
LAB_KEY = os.path.join(STATE, "id_ed25519")
KNOWN_HOSTS = os.path.join(STATE, "known_hosts")
FLEET = os.path.join(SCENARIO, "fleet", "edge.fleet.yml")
# The venv's bin directory (not resolved: the venv's python is a symlink to the system's).
BIN = os.path.dirname(sys.executable)
DROPIN = "/etc/ssh/sshd_config.d/10-edgeops-bastion.conf"
# Under load sshd's lines reach the journal late: logs are read until they hold what is expected, up to this long.
LOG_DEADLINE = 60


def run(argv, timeout=60, **kwargs):
    if "input" not in kwargs:
        kwargs["stdin"] = subprocess.DEVNULL
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def jump(*options, command=None, timeout=30, **kwargs):
    """ssh to the bastion as the jump user, configured as the devices' group_vars configure the hop; a command goes
    after the destination (before it, ssh would take it for the host name)."""
    argv = ["ssh", "-F", SSH_CONFIG, "-p", str(HUB_PORT), *options, "jump@127.0.0.1"] + ([command] if command else [])
    return run(argv, timeout=timeout, **kwargs)


def ansible_env():
    env = dict(os.environ)
    # The project's configuration (host_key_checking on), not molecule's; and a refused fleet file fails.
    env.update(ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"), ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    return env


def journal_cursor(host):
    """The cursor of the newest journal entry. Reading after it does not depend on the wall clock (--since does,
    and the clock of these machines can jump)."""
    return json.loads(host.check_output("journalctl -q -n 1 -o json --no-pager"))["__CURSOR"]


def wait_for_journal(host, cursor, complete, unit="ssh.service"):
    """Read the unit's journal after cursor until complete(text) holds or LOG_DEADLINE s have passed; return the
    last text read (the caller's assertions show it when the lines never came)."""
    deadline = time.monotonic() + LOG_DEADLINE
    while True:
        text = host.check_output("journalctl -q -u %s --after-cursor '%s' -o short-unix --no-pager" % (unit, cursor))
        if complete(text) or time.monotonic() >= deadline:
            return text
        time.sleep(1)


def sshd_settings(host, spec=None):
    argv = "sshd -T" + (" -C %s" % spec if spec else "")
    settings = {}
    for line in host.check_output(argv).splitlines():
        key, _sep, value = line.partition(" ")
        settings[key] = value
    return settings


# ---- the devices: nothing published, reachable through the bastion only ------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_devices_publish_nothing_on_the_controller(device):
    inspect = json.loads(run(["docker", "inspect", "%s-%s" % (LAB, device)]).stdout)[0]
    assert not inspect["HostConfig"]["PortBindings"]
    assert all(not bindings for bindings in (inspect["NetworkSettings"]["Ports"] or {}).values())
    hub = json.loads(run(["docker", "inspect", "%s-site01-hub" % LAB]).stdout)[0]
    assert hub["HostConfig"]["PortBindings"]["22/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(HUB_PORT)}]


@pytest.mark.parametrize("port", [HUB_PORT + 1, HUB_PORT + 2])
def test_direct_ssh_to_a_device_slot_is_refused(port):
    # The ports a published device would have had: nothing listens there.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    direct = run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-i", LAB_KEY, "-p", str(port),
                  "root@127.0.0.1", "hostname"])
    assert direct.returncode == 255 and "Connection refused" in direct.stderr


def test_the_fleet_plugin_sets_proxyjump_through_the_bastion():
    out = run([os.path.join(BIN, "ansible-inventory"), "-i", FLEET, "--host", "site01-dev01"], env=ansible_env())
    assert out.returncode == 0, out.stderr
    hostvars = json.loads(out.stdout)
    assert hostvars["ansible_ssh_common_args"] == "-o ProxyJump=jump@127.0.0.1:%d" % HUB_PORT
    assert hostvars["ansible_host"] == "site01-dev01" and hostvars["ansible_port"] == 22


def test_ansible_reaches_every_device_through_the_bastion():
    out = run([os.path.join(BIN, "ansible"), "-i", FLEET, "edge_devices", "-m", "ansible.builtin.command",
               "-a", "cat /etc/hostname"], env=ansible_env(), cwd=PROJECT, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    for device in DEVICES:
        assert re.search(r"^%s \| CHANGED \| rc=0 >>\n%s$" % (device, device), out.stdout, re.M), out.stdout


def test_ssh_with_proxyjump_reaches_a_device():
    out = run(["ssh", "-F", SSH_CONFIG, "-J", "jump@127.0.0.1:%d" % HUB_PORT, "-i", LAB_KEY,
               "-o", "UserKnownHostsFile=" + KNOWN_HOSTS, "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
               "root@site01-dev02", "hostname"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "site01-dev02"


# ---- the jump user: forwarding to the site's devices, nothing else -------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_forwarding_to_a_device_is_granted(target):
    # -W is what ProxyJump does: the device's sshd answers with its banner.
    out = jump("-W", target, timeout=20)
    assert out.stdout.startswith("SSH-2.0-OpenSSH"), out.stderr


@pytest.mark.parametrize("target", ["localhost:22", "site01-hub:22", "site01-dev01:2375", "127.0.0.1:5000"])
def test_forwarding_anywhere_else_is_refused(target):
    out = jump("-W", target)
    assert out.returncode == 255
    assert "administratively prohibited" in out.stderr, out.stderr
    assert "SSH-2.0" not in out.stdout


def test_remote_forwarding_is_refused():
    out = jump("-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:localhost:22")
    assert out.returncode == 255 and "remote port forwarding failed" in out.stderr, out.stderr


@pytest.mark.parametrize("how", ["command", "tty", "shell"])
def test_the_jump_user_gets_no_shell(host, how):
    # Each attempt would leave a file on the hub if anything ran: a command, the same with a TTY, or a
    # command typed into a shell (no command asks for one).
    marker = "/tmp/edgeops-jump-ran-%s-%s" % (how, uuid.uuid4().hex[:8])
    command = "touch %s; id" % marker
    if how == "command":
        out = jump(command=command)
    elif how == "tty":
        out = jump("-tt", command=command)
    else:
        out = jump(input=command + "\n")
    assert out.returncode != 0
    assert "uid=" not in out.stdout
    # The key was accepted and the session itself refused (MaxSessions 0): not a failed login, not a wrong host.
    assert "channel 0: open failed" in out.stderr and "Permission denied" not in out.stderr, out.stderr
    assert not host.file(marker).exists


def test_root_cannot_forward_either():
    # Forwarding is for jump users only: root (the lab's own way to the devices) is refused too.
    out = run(["ssh", "-i", LAB_KEY, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + KNOWN_HOSTS,
               "-o", "StrictHostKeyChecking=yes", "-p", str(HUB_PORT), "-W", "site01-dev01:22", "root@127.0.0.1"])
    assert out.returncode == 255 and "administratively prohibited" in out.stderr, out.stderr


def test_password_authentication_is_not_offered():
    out = run(["ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
               "-o", "UserKnownHostsFile=" + KNOWN_HOSTS, "-p", str(HUB_PORT), "jump@127.0.0.1", "true"])
    assert out.returncode == 255
    assert re.search(r"Permission denied \(publickey\)", out.stderr), out.stderr


# ---- the hub's configuration -----------------------------------------------------------------------

def test_sshd_runs_hardened_for_everyone(host):
    settings = sshd_settings(host)
    expected = {
        "passwordauthentication": "no", "kbdinteractiveauthentication": "no", "permitemptypasswords": "no",
        "authenticationmethods": "publickey", "allowtcpforwarding": "no", "allowagentforwarding": "no",
        "allowstreamlocalforwarding": "no", "x11forwarding": "no", "permittunnel": "no", "gatewayports": "no",
        "permitopen": "none", "clientaliveinterval": "30", "clientalivecountmax": "3", "maxauthtries": "3",
        "maxsessions": "4", "maxstartups": "10:30:60", "logingracetime": "30", "loglevel": "VERBOSE",
    }
    assert {key: settings.get(key) for key in expected} == expected
    assert settings["permitrootlogin"] in ("prohibit-password", "without-password")
    assert settings["kexalgorithms"].split(",")[0] == "mlkem768x25519-sha256"
    for weak in ("diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1", "ecdh-sha2-nistp256"):
        assert weak not in settings["kexalgorithms"].split(",")
    assert settings["ciphers"] == ("chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,"
                                   "aes256-ctr,aes128-ctr")
    assert all(mac.endswith("-etm@openssh.com") for mac in settings["macs"].split(","))
    assert "ssh-rsa" not in settings["pubkeyacceptedalgorithms"].split(",")
    assert "server_request_direct_tcpip" in settings["logverbose"]


def test_sshd_grants_the_jump_user_forwarding_to_the_devices_only(host):
    settings = sshd_settings(host, "user=jump,host=controller,addr=127.0.0.1")
    assert settings["allowtcpforwarding"] == "local"
    assert sorted(settings["permitopen"].split()) == TARGETS
    assert settings["maxsessions"] == "0"
    assert settings["permittty"] == "no"
    assert settings["permituserrc"] == "no"
    assert settings["forcecommand"] == "/usr/sbin/nologin"
    assert settings["authorizedkeysfile"] == "/etc/ssh/edgeops-bastion-keys/%u"
    assert settings["permitlisten"] == "none"


def test_jump_user_and_exclusive_keys(host):
    user = host.user("jump")
    assert user.shell == "/usr/sbin/nologin"
    # Its own primary group (useradd's user private group) and the jump group, nothing else.
    assert "edgeops-jump" in user.groups and set(user.groups) <= {"jump", "edgeops-jump"}
    # No home: nowhere for the user to keep files or keys of its own.
    assert user.home == "/nonexistent" and not host.file(user.home).exists
    assert not host.user("retired").exists
    keys_dir = host.file("/etc/ssh/edgeops-bastion-keys")
    assert keys_dir.user == "root" and keys_dir.mode == 0o755
    assert host.check_output("ls -A /etc/ssh/edgeops-bastion-keys") == "jump"
    keys = host.file("/etc/ssh/edgeops-bastion-keys/jump")
    assert keys.user == "root" and keys.mode == 0o644
    lines = [line for line in keys.content_string.splitlines() if line and not line.startswith("#")]
    with open(JUMP_KEY + ".pub") as handle:
        public = handle.read().strip()
    assert lines == ["restrict,port-forwarding " + public]


def test_jump_keys_are_read_from_the_root_owned_file_only(host):
    # A key put where sshd looks by default (~/.ssh/authorized_keys, root-owned so that StrictModes accepts it)
    # must not let anyone in as the jump user: sshd reads its keys from the role's file only.
    with open(LAB_KEY + ".pub") as handle:
        other = handle.read().strip()
    home = host.user("jump").home
    assert not host.file(home).exists
    planted = host.run("install -d -m 0755 %s/.ssh && printf '%%s\\n' '%s' > %s/.ssh/authorized_keys"
                       " && chmod 0644 %s/.ssh/authorized_keys" % (home, other, home, home))
    try:
        assert planted.rc == 0, planted.stderr
        out = run(["ssh", "-F", "none", "-i", LAB_KEY, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                   "-o", "UserKnownHostsFile=" + KNOWN_HOSTS, "-o", "StrictHostKeyChecking=yes", "-p", str(HUB_PORT),
                   "-W", "site01-dev01:22", "jump@127.0.0.1"])
        assert out.returncode == 255 and "Permission denied (publickey)" in out.stderr, out.stderr
        assert "SSH-2.0" not in out.stdout
    finally:
        host.run("rm -rf %s" % home)
    assert not host.file(home).exists
    # The listed key still opens the same forwarding.
    assert jump("-W", "site01-dev01:22", timeout=20).stdout.startswith("SSH-2.0-OpenSSH")


def test_the_live_configuration_is_the_validated_one(host):
    assert host.file(DROPIN).exists and host.file(DROPIN).user == "root"
    assert host.run("sshd -t").rc == 0
    assert host.service("ssh").is_running and host.service("ssh").is_enabled


def session_log(journal, fingerprint):
    """The jump logins with this key, forwardings granted to site01-dev02:22 and refused to localhost:22, each as
    the pid of the sshd-session that logged the login (a forwarding is logged by the login's user child)."""
    def pids(pattern):
        return set(re.findall(r"^\S+ \S+ [\w-]+\[(\d+)\]: .*%s" % pattern, journal, re.M))

    # sshd-session logs the login (with the key's fingerprint) in its privileged process, which then
    # names its user child ("User child is on pid N"); the child logs each forwarding request.
    parent_of = dict((child, parent) for parent, child in re.findall(
        r"^\S+ \S+ [\w-]+\[(\d+)\]: User child is on pid (\d+)$", journal, re.M))
    return {
        "logins": pids(re.escape("Accepted publickey for jump from ") + r".* ED25519 " + re.escape(fingerprint)),
        "granted": set(parent_of.get(pid, pid) for pid in pids(
            r"server_request_direct_tcpip\(\).*originator \S+ port \d+, target site01-dev02 port 22$")),
        "refused": set(parent_of.get(pid, pid) for pid in pids(
            r"to connect to host localhost port 22, but the request was denied")),
    }


def test_the_session_log_shows_each_forwarding_with_the_key_fingerprint(host):
    cursor = journal_cursor(host)
    assert jump("-W", "site01-dev02:22", timeout=20).stdout.startswith("SSH-2.0-OpenSSH")
    assert "administratively prohibited" in jump("-W", "localhost:22").stderr
    fingerprint = run(["ssh-keygen", "-lf", JUMP_KEY + ".pub"]).stdout.split()[1]

    def complete(text):
        log = session_log(text, fingerprint)
        # Two logins; each forwarding traced back to one of them (both sessions' lines are in).
        return (len(log["logins"]) >= 2 and log["granted"] and log["refused"]
                and log["granted"] | log["refused"] <= log["logins"])

    journal = wait_for_journal(host, cursor, complete)
    log = session_log(journal, fingerprint)
    assert len(log["logins"]) >= 2, journal
    assert log["granted"] and log["refused"], journal
    assert log["granted"] <= log["logins"], journal
    assert log["refused"] <= log["logins"], journal
    # Two sessions, one forwarding each.
    assert log["granted"] != log["refused"], journal


def test_the_journal_is_persistent(host):
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert host.file("/var/log/journal/%s/system.journal" % machine_id).is_file
    conf = host.file("/etc/systemd/journald.conf.d/60-edgeops-bastion.conf")
    assert conf.contains("^Storage=persistent$") and conf.contains("^MaxRetentionSec=1year$")


# ---- refused input changes nothing -------------------------------------------------------------------

def converge(*extra):
    inventory = os.path.join(EPHEMERAL, "inventory")
    return run([os.path.join(BIN, "ansible-playbook"), "-i", inventory, "-i", FLEET,
                os.path.join(SCENARIO, "converge.yml"), *extra], env=ansible_env(), cwd=PROJECT, timeout=300)


@pytest.mark.parametrize("extra, message", [
    # sshd refuses it (start above full): the validation keeps the live file.
    (["-e", "bastion_max_startups=30:30:10"], "Invalid MaxStartups"),
    # A target that would add a line to sshd_config.
    (["-e", json.dumps({"bastion_permit_open_extra": ["evil:22\nPermitOpen any"]})], "are not host:port"),
    # A key with options of its own.
    (["-e", json.dumps({"bastion_users": [{"name": "jump", "authorized_keys": ['command="sh" ssh-ed25519 AAAA']}]})],
     "Refused keys"),
])
def test_refused_settings_leave_the_bastion_as_it_was(host, extra, message):
    before = host.file(DROPIN).sha256sum, host.file("/etc/ssh/edgeops-bastion-keys/jump").sha256sum
    out = converge(*extra)
    assert out.returncode != 0
    assert message in re.sub(r"\s+", " ", out.stdout + out.stderr), out.stdout[-3000:]
    assert (host.file(DROPIN).sha256sum, host.file("/etc/ssh/edgeops-bastion-keys/jump").sha256sum) == before
    assert jump("-W", "site01-dev01:22", timeout=20).stdout.startswith("SSH-2.0-OpenSSH")


def test_check_mode_reports_nothing_to_change():
    out = converge("--check", "--diff")
    assert out.returncode == 0, out.stdout[-3000:]
    assert re.search(r"site01-hub\s*:\s*ok=\d+\s+changed=0\s", out.stdout), out.stdout[-3000:]
