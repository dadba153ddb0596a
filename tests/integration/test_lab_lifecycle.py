# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab and site.yml end to end, as a user runs them: up, every play of site.yml, again, check mode, status, down.

One hub and two devices (one to probe the other from), on the lab image the other lab tests share (Docker Engine baked in). The settings of
tests/support/site/vars.yml switch on every play: base_os, the bastion on the hub, the firewall on the devices (with
consent, commit-confirmed), the site registry, Alertmanager and Prometheus on the hub, node exporter everywhere
(scraped by the hub through the devices' firewall), Docker Engine with the registry's trust and the generations
agent, secrets from a real ansible-vault file, and the workloads of demo-1.0.0 (built on the controller and published
to the hub's registry first). Then: a second converge and check mode change nothing, and
the firewall and the bastion work together: a device takes SSH from its bastion and the management network only,
and the controller reaches every device through the bastion's jump user (ProxyJump, as the fleet inventory sets it).

Uses its own lab name and ports so it never touches the user's lab. The tests run in order and share the lab.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import subprocess
import time
import urllib.request

import pytest
import yaml

from conftest import LAB_PACKAGES, REPO, ansible, docker_names, inventory_hosts, lab_args

LAB = "edgeops-citest"
PORT_BASE = 42500
ALERTMANAGER_PORT = PORT_BASE + 91
PROMETHEUS_PORT = PORT_BASE + 92
HUB = "site01-hub"
DEVICES = ["site01-dev01", "site01-dev02"]
HOSTS = [HUB] + DEVICES
STATE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "edgeops-lab", LAB)
SITE_VARS = os.path.join(REPO, "tests", "support", "site", "vars.yml")
# Every role site.yml runs; each must have run tasks in the first converge.
ROLES = ["base_os", "bastion", "firewall", "registry", "alertmanager", "node_exporter", "prometheus", "docker_engine",
         "agent", "secrets", "workloads"]
RELEASE = "demo-1.0.0"
# Test-only values, kept in the ansible-vault file; none may appear in any output.
VAULT = {
    "vault_dashboard_token": "tok-Lc4Wn8Qe2Rv6Hy",
    "vault_registry_push_password": "push-Gm3Tb7Ks1Xd9",
    "vault_registry_pull_password": "pull-Fz5Pj2Nu8Ya4",
}
VAULT_PASSWORD = "lifecycle-vault-password-3Kx7\n"
# A connection the device's firewall drops ends in this many seconds.
PROBE_TIMEOUT = 3
PROBE = r"""
import json, socket, sys, threading
results = {}
def probe(host):
    try:
        sock = socket.create_connection((host, 22), timeout=%(connect)d)
    except OSError as exc:
        results[host] = type(exc).__name__
        return
    try:
        sock.settimeout(%(banner)d)
        results[host] = "connected " + sock.recv(64).decode("ascii", "replace").strip()
    except OSError as exc:
        results[host] = "connected, no banner: " + type(exc).__name__
    finally:
        sock.close()
threads = [threading.Thread(target=probe, args=(host,)) for host in sys.argv[1:]]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(results))
""" % {"connect": PROBE_TIMEOUT, "banner": 20}


def container(host):
    return "%s-%s" % (LAB, host)


def dexec(host, *argv, timeout=120):
    return subprocess.run(["docker", "exec", container(host)] + list(argv), capture_output=True, text=True,
                          timeout=timeout, check=False)


def docker_json(*argv):
    return json.loads(subprocess.run(["docker"] + list(argv), capture_output=True, text=True, check=True,
                                     timeout=60).stdout)


class Lab(object):
    def __init__(self, tmp):
        self.tmp = tmp
        self.inventory = os.path.join(tmp, "hosts.yml")
        self.lab_vars = lab_args(LAB, PORT_BASE, self.inventory, lab_devices_per_site=len(DEVICES),
                                 lab_image_packages=LAB_PACKAGES)
        self.site_facts = os.path.join(tmp, "site_test.yml")
        self.vault_file = os.path.join(tmp, "vault.yml")
        self.vault_password = os.path.join(tmp, "vault-password")
        self.jump_key = os.path.join(tmp, "jump_ed25519")
        self.release = os.path.join(tmp, "releases", RELEASE + ".yml")
        self.fleet_dir = os.path.join(tmp, "fleet")
        self.first_up = None
        self.host_keys = {}
        self.network = {}
        self.outputs = []

    def run(self, tool, *args):
        run = ansible(tool, *args)
        self.outputs.append(run.out)
        return run

    def write_vault(self):
        """A real ansible-vault file (AES256, password file) with the secret and the registry's passwords."""
        with open(self.vault_password, "w") as handle:
            handle.write(VAULT_PASSWORD)
        os.chmod(self.vault_password, 0o600)
        with open(self.vault_file, "w") as handle:
            yaml.safe_dump(VAULT, handle)
        run = ansible("ansible-vault", "encrypt", "--vault-password-file", self.vault_password, self.vault_file)
        assert run.rc == 0, run.out
        with open(self.vault_file) as handle:
            assert handle.read().startswith("$ANSIBLE_VAULT;1.1;AES256")

    def write_jump_key(self):
        """The jump user's key pair (an operator's key in real life)."""
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jump@" + LAB, "-f", self.jump_key],
                       check=True, capture_output=True, timeout=30)

    def write_site_facts(self):
        """What only the running lab knows: the site network, its Docker gateway (where the controller's SSH comes
        from, through the published ports) and the hub's address on it (the bastion, as the devices see it)."""
        network = docker_json("network", "inspect", "%s-site01" % LAB)[0]
        ipam = network["IPAM"]["Config"][0]
        hub = docker_json("inspect", container(HUB))[0]["NetworkSettings"]["Networks"]["%s-site01" % LAB]
        self.network = {"cidr": ipam["Subnet"], "gateway": ipam["Gateway"], "hub": hub["IPAddress"]}
        with open(self.site_facts, "w") as handle:
            yaml.safe_dump({"site_test_dir": self.tmp, "site_test_network": self.network}, handle)

    def site_args(self):
        return ["-i", self.inventory, "-e", "@" + SITE_VARS, "-e", "@" + self.site_facts, "-e", "@" + self.vault_file,
                "--vault-password-file", self.vault_password]

    def playbook(self, playbook, *args):
        return self.run("ansible-playbook", *(self.site_args() + [playbook] + list(args)))

    def write_fleet(self):
        """The devices as the fleet inventory sees them: at their names on the site network, through the site's
        bastion (ProxyJump jump@127.0.0.1:<hub's port>). ssh gives a ProxyJump hop none of the command line's -o
        options, so the hop's key and pinned host key come from an ssh configuration file (-F)."""
        os.makedirs(os.path.join(self.fleet_dir, "group_vars"))
        fleet = {"version": 1,
                 "sites": {"site01": {"bastion": {"host": "127.0.0.1", "port": PORT_BASE, "user": "jump"}}},
                 "devices": dict((name, {"site": "site01", "address": name, "user": "root"}) for name in DEVICES)}
        with open(os.path.join(self.fleet_dir, "fleet.yml"), "w") as handle:
            yaml.safe_dump(fleet, handle)
        with open(os.path.join(self.fleet_dir, "edge.fleet.yml"), "w") as handle:
            handle.write("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n")
        known_hosts = os.path.join(self.fleet_dir, "known_hosts")
        with open(known_hosts, "w") as handle:
            for name in DEVICES:
                handle.write("%s %s\n" % (name, self.host_keys[name]))
        ssh_config = os.path.join(self.fleet_dir, "ssh_config")
        with open(ssh_config, "w") as handle:
            handle.write("Host 127.0.0.1\n    IdentityFile %s\n    IdentitiesOnly yes\n    UserKnownHostsFile %s\n"
                         "    StrictHostKeyChecking yes\n    BatchMode yes\n"
                         % (self.jump_key, os.path.join(STATE_DIR, "known_hosts")))
        group_vars = {
            "ansible_ssh_private_key_file": os.path.join(STATE_DIR, "id_ed25519"),
            # _extra_args: _common_args carries the plugin's ProxyJump.
            "ansible_ssh_extra_args": ("-F %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes"
                                       " -o IdentitiesOnly=yes" % (ssh_config, known_hosts)),
            # Other labs have devices of the same names on port 22: never share their ControlPersist masters.
            "ansible_control_path_dir": os.path.join(self.fleet_dir, "cp"),
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        with open(os.path.join(self.fleet_dir, "group_vars", "edge_devices.yml"), "w") as handle:
            yaml.safe_dump(group_vars, handle)
        return os.path.join(self.fleet_dir, "edge.fleet.yml")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(str(tmp_path_factory.mktemp("lab")))

    def down():
        return ansible("ansible-playbook", "playbooks/lab/down.yml", *lab.lab_vars)

    if docker_names("container", LAB):  # left by a run that was killed before its teardown
        down()
    lab.write_vault()
    lab.write_jump_key()
    lab.first_up = lab.run("ansible-playbook", "playbooks/lab/up.yml", *lab.lab_vars)
    yield lab
    down()


def recap_changed(run):
    return dict((host, result["changed"]) for host, result in run.recap.items())


def test_up_starts_the_devices_and_a_hub_reachable_over_ssh(lab):
    assert lab.first_up.rc == 0, lab.first_up.out
    data = inventory_hosts(lab.inventory)
    assert sorted(data["edge_devices"]["hosts"]) == DEVICES
    assert data["site_hubs"]["hosts"] == [HUB]
    # A module on every host over real SSH (known_hosts pinned, StrictHostKeyChecking=yes): each host's key.
    run = lab.run("ansible", "-i", lab.inventory, "all", "-m", "ansible.builtin.command",
                  "-a", "cat /etc/ssh/ssh_host_ed25519_key.pub")
    assert run.rc == 0, run.out
    for host, key in re.findall(r"^(\S+) \| CHANGED \| rc=0 >>\n(ssh-ed25519 \S+)", run.out, re.M):
        lab.host_keys[host] = key
    assert sorted(lab.host_keys) == sorted(HOSTS), run.out
    assert docker_names("container", LAB) == sorted(container(host) for host in HOSTS)
    # each container has its own /var/lib/docker volume
    assert len(docker_names("volume", LAB)) == len(HOSTS)


def test_host_keys_are_pinned_and_differ_per_device(lab):
    assert len(set(lab.host_keys.values())) == len(HOSTS)
    with open(os.path.join(STATE_DIR, "known_hosts")) as handle:
        pinned = dict(line.split(" ", 1) for line in handle.read().splitlines() if line and not line.startswith("#"))
    expected = dict(("[127.0.0.1]:%d" % (PORT_BASE + slot), lab.host_keys[host]) for slot, host in enumerate(HOSTS))
    assert pinned == expected


def test_up_again_changes_nothing(lab):
    again = lab.run("ansible-playbook", "playbooks/lab/up.yml", *lab.lab_vars)
    assert again.rc == 0, again.out
    assert again.recap["localhost"]["changed"] == 0, again.out


def test_release_is_built_and_published_to_the_hub_registry(lab):
    lab.write_site_facts()
    setup = lab.playbook("tests/integration/playbooks/site_setup.yml")
    assert setup.rc == 0, setup.out[-5000:]
    with open(lab.release) as handle:
        manifest = yaml.safe_load(handle)
    assert manifest["release"] == RELEASE
    digests = dict((name, workload.get("digest", "")) for name, workload in manifest["workloads"].items())
    assert sorted(digests) == ["device-manager", "predictor", "trainer"]
    assert all(re.match(r"^sha256:[0-9a-f]{64}$", digest) for digest in digests.values()), digests


def test_site_runs_every_play(lab):
    first = lab.playbook("site.yml")
    assert first.rc == 0, first.out[-8000:]
    assert set(first.recap) == set(HOSTS), first.recap
    assert all(changed > 0 for changed in recap_changed(first).values()), first.recap
    for role in ROLES:
        assert "TASK [edgeops.fleet.%s : " % role in first.out, role


def test_site_again_reports_no_change_on_any_host(lab):
    second = lab.playbook("site.yml")
    assert second.rc == 0, second.out[-8000:]
    assert recap_changed(second) == dict((host, 0) for host in HOSTS), second.out[-8000:]


def test_site_check_mode_reports_no_change_on_a_converged_lab(lab):
    check = lab.playbook("site.yml", "--check", "--diff")
    assert check.rc == 0, check.out[-8000:]
    assert recap_changed(check) == dict((host, 0) for host in HOSTS), check.out[-8000:]


def device_state():
    """What a refused release must leave alone on every device: its generations, nft tables and containers."""
    state = {}
    for device in DEVICES:
        generations = json.loads(dexec(device, "edgeops-gen", "list").stdout)
        containers = dexec(device, "docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}} {{.State}}")
        state[device] = {"generations": dict((k, generations.get(k)) for k in ("current", "confirmed", "pending")),
                         "kept": sorted((g["id"], g["release"]) for g in generations["generations"]),
                         # -s: without counters and other state that traffic changes
                         "nft": dexec(device, "nft", "-s", "list", "ruleset").stdout,
                         "containers": sorted(containers.stdout.split("\n"))}
        assert state[device]["generations"]["current"] and state[device]["containers"], state[device]
    return state


def bad_release(lab, name, change):
    """A copy of the published release manifest with one change, written next to it."""
    with open(lab.release) as handle:
        manifest = yaml.safe_load(handle)
    change(manifest)
    path = os.path.join(os.path.dirname(lab.release), name)
    with open(path, "w") as handle:
        yaml.safe_dump(manifest, handle)
    return path


# site.yml checks a device's release on the controller, in its first play, with the rollout's checks: a probe the
# device would refuse at stage fails there, naming the file and the key, before any play reaches a device; every
# device keeps its generations, nft tables and containers.
def test_site_refuses_a_bad_probe_before_any_play_reaches_a_device(lab):
    path = bad_release(lab, "bad-probe.yml", lambda m: m["workloads"]["predictor"].__setitem__(
        "probes", [{"name": "api", "type": "tcp", "port": 8080, "retries": -1}]))
    before = device_state()
    run = lab.playbook("site.yml", "--tags", "workloads", "-e", "workloads_release_file=" + path)
    assert run.rc != 0, run.out[-3000:]
    assert device_state() == before
    first_play = " ".join(run.out.split("PLAY [Base operating system")[0].split())
    assert "%s: workloads.predictor.probes[0] (api).retries" % path in first_play, run.out[-3000:]
    assert "TASK [edgeops.fleet.workloads : Ask each registry" not in run.out, run.out[-3000:]
    assert recap_changed(run) == dict((host, 0) for host in HOSTS), run.out[-3000:]


# An image missing from the site registry (a digest nobody published) is found by the controller asking the registry,
# once, before any device pulls: the devices keep the release they run.
def test_site_refuses_an_unpublished_image_before_any_device_pulls(lab):
    missing = "sha256:" + "0" * 64
    path = bad_release(lab, "unpublished.yml", lambda m: m["workloads"]["trainer"].__setitem__("digest", missing))
    before = device_state()
    run = lab.playbook("site.yml", "--tags", "workloads", "-e", "workloads_release_file=" + path)
    assert run.rc != 0, run.out[-3000:]
    assert device_state() == before
    flat = " ".join(run.out.split())
    assert "site01-hub:5000/edgeops/trainer@%s (workload trainer) is not in site01-hub:5000" % missing in flat, \
        run.out[-3000:]
    assert "edgeops/predictor@" not in flat.split("not fully published")[1].split("(publish it")[0], run.out[-3000:]
    assert "TASK [edgeops.fleet.workloads : Stage" not in run.out, run.out[-3000:]
    assert recap_changed(run) == dict((host, 0) for host in HOSTS), run.out[-3000:]


def test_the_hub_runs_registry_alertmanager_prometheus_and_bastion(lab):
    active = dexec(HUB, "systemctl", "is-active", "docker-registry.service", "prometheus-alertmanager.service",
                   "prometheus.service", "ssh.service")
    assert active.stdout.split() == ["active"] * 4, active.stdout + active.stderr
    jump = dexec(HUB, "id", "-nG", "jump")
    assert jump.returncode == 0 and "edgeops-jump" in jump.stdout.split(), jump.stderr
    permit = dexec(HUB, "sshd", "-T", "-C", "user=jump,host=controller,addr=127.0.0.1")
    permit_open = re.search(r"^permitopen (.*)$", permit.stdout, re.M)
    assert permit_open and sorted(permit_open.group(1).split()) == ["%s:22" % device for device in DEVICES], \
        permit.stdout + permit.stderr
    # Alertmanager's API through the hub's published port.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 60
    while True:
        try:
            status = opener.open("http://127.0.0.1:%d/-/ready" % ALERTMANAGER_PORT, timeout=10).status
        except OSError as exc:
            status = exc
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status == 200
    # Prometheus scrapes both devices' node exporter from the hub, through the devices' firewall, and reads the
    # agent's metrics there (the generation each device runs).
    deadline = time.monotonic() + 60
    while True:
        url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (
            PROMETHEUS_PORT, urllib.request.quote('edgeops_generation_current{job="edgeops-devices"} > 0'))
        try:
            series = json.loads(opener.open(url, timeout=10).read().decode())["data"]["result"]
        except (OSError, ValueError, KeyError) as exc:
            series = exc
        seen = sorted(s["metric"]["device"] for s in series) if isinstance(series, list) else series
        if seen == DEVICES or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert seen == DEVICES, seen


@pytest.mark.parametrize("device", DEVICES)
def test_the_device_runs_the_release_with_its_secret_behind_the_firewall(lab, device):
    table = dexec(device, "nft", "list", "chain", "inet", "edgeops_firewall", "input")
    assert "policy drop;" in table.stdout, table.stdout + table.stderr
    active = dexec(device, "systemctl", "is-active", "docker.service", "edgeops-firewall.service")
    assert active.stdout.split() == ["active"] * 2, active.stdout + active.stderr
    listing = json.loads(dexec(device, "edgeops-gen", "list").stdout)
    by_id = dict((generation["id"], generation) for generation in listing["generations"])
    assert listing["current"] == listing["confirmed"] and listing["pending"] is None, listing
    assert by_id[listing["current"]]["release"] == RELEASE, listing
    secret = dexec(device, "sha256sum", "/run/edgeops/secrets/dashboard_token")
    assert secret.stdout.split()[:1] == [hashlib.sha256(VAULT["vault_dashboard_token"].encode()).hexdigest()]
    predict = dexec(device, "curl", "-fsS", "--max-time", "20", "http://127.0.0.1:8080/predict?features=2.1,61,10")
    assert predict.returncode == 0 and "prediction" in predict.stdout, predict.stdout + predict.stderr


def test_devices_take_ssh_only_from_the_bastion_and_the_management_network(lab):
    net = lab.network
    for device in DEVICES:
        sources = dexec(device, "nft", "list", "set", "inet", "edgeops_firewall", "ssh_sources_v4")
        elements = re.search(r"elements = \{([^}]*)\}", sources.stdout)
        assert elements, sources.stdout + sources.stderr
        assert sorted(e.strip() for e in elements.group(1).split(",")) == sorted([net["gateway"], net["hub"]])
    # From each host of the site network to every device, at once: the hub (the bastion) is let in, a peer device
    # is dropped (its connection times out).
    probes = dict((host, subprocess.Popen(
        ["docker", "exec", container(host), "python3", "-c", PROBE] + [d for d in DEVICES if d != host],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) for host in HOSTS)
    results = {}
    for host, proc in probes.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results[host] = json.loads(out)
    for device in DEVICES:
        assert results[HUB][device].startswith("connected SSH-2.0-"), results
        for peer in DEVICES:
            if peer != device:
                assert results[peer][device] in ("TimeoutError", "ConnectionRefusedError"), results
    # The controller reaches every device through the bastion: the fleet inventory's ProxyJump via the hub's jump
    # user. Each device sees the connection coming from the hub.
    fleet = lab.write_fleet()
    inventory = lab.run("ansible-inventory", "-i", fleet, "--host", DEVICES[0])
    assert inventory.rc == 0, inventory.out
    assert "-o ProxyJump=jump@127.0.0.1:%d" % PORT_BASE in inventory.out, inventory.out
    run = lab.run("ansible", "-i", fleet, "edge_devices", "-m", "ansible.builtin.command", "-a", "printenv SSH_CLIENT")
    assert run.rc == 0, run.out
    seen = dict(re.findall(r"^(\S+) \| CHANGED \| rc=0 >>\n(\S+) ", run.out, re.M))
    assert seen == dict((device, net["hub"]) for device in DEVICES), run.out


def test_status_shows_every_container_running(lab):
    status = lab.run("ansible-playbook", "playbooks/lab/status.yml", "-e", "lab_name=" + LAB)
    assert status.rc == 0, status.out
    assert "%s: %d container(s)" % (LAB, len(HOSTS)) in status.out
    assert status.out.count("systemd running") == len(HOSTS), status.out


def test_no_secret_value_in_any_output(lab):
    assert lab.outputs
    for value in VAULT.values():
        assert not [out for out in lab.outputs if value in out], "a vault value appears in a play's output"


def test_down_leaves_no_container_volume_network_or_inventory(lab):
    down = ansible("ansible-playbook", "playbooks/lab/down.yml", *lab.lab_vars)
    assert down.rc == 0, down.out
    assert docker_names("container", LAB) == []
    assert docker_names("volume", LAB) == []
    assert docker_names("network", LAB) == []
    assert not os.path.exists(lab.inventory)
