# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout lab of the integration tests: one site, a hub (registry + Alertmanager) and four devices.

test_rollout.py (the good path, the approval lock, A/B, a device cut off mid-wave, a whole rollback) and then
test_rollout_faults.py (bad releases stopped at the canary, the fleet-wide failure budget after it) share one of
these (the session fixture `rollout_lab` in conftest.py): the good path leaves every device on demo-1.1.0, which
is where the faults start, so the second module costs no lab of its own (a lab's start, set-up and first rollout
were a quarter of the suite's lab time). The inventory is the lab's (connection) plus the fleet inventory plugin
over a fleet file written here (sites, tags, waves [1, 75%, 100%]: one canary, then two devices, then one);
every rollout runs playbooks/rollout.yml as a user would.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import urllib.request

import yaml

from conftest import LAB_PACKAGES, REPO, ansible, lab_args

DEVICES = ["site01-dev%02d" % n for n in range(1, 5)]
WAVES = [1, "75%", "100%"]
CANARY = "site01-dev03"
# Test-only secrets (real use: ansible-vault); none may appear in any output or record.
SECRETS = {"pull": "pull-Rt5m2Qx8Lw", "push": "push-Hy3c6Vn1Zd", "token": "tok-Bq7Wd2Kp9Xs4"}
# Long enough for a switch, the soak and the gates on a loaded 2-CPU machine (a wave of two devices took 163 s with
# load ~40); a confirmed device never waits for it. Tests where the timeout itself is under test set their own.
CONFIRM_TIMEOUT = 300

# The ten-device light lab (the session fixture `rollout_scale_lab` in conftest.py): test_rollout_scale.py's rollouts,
# then test_awx_jobs.py's jobs on three of its devices. Waves of 1, 1, 3 and 5 devices with this salt.
SCALE_DEVICES = ["site01-dev%02d" % n for n in range(1, 11)]
SCALE_CANARY = "site01-dev01"
SCALE_WAVES = [1, "10%", "50%", "100%"]
SCALE_SALT = "lab-6"
LIGHT_GOOD, LIGHT_BAD = "light-1.1.0", "light-1.1.0-bad"


class RolloutLab(object):
    """One rollout lab: `name` prefixes its containers, `port_base` its published ports; `tags` (device -> extra
    fleet tags) and `waves` (the fleet file's plan) go into the fleet file at the next write_fleet; `fresh` is true
    until a module switches a device."""
    waves = WAVES

    def __init__(self, tmp, name, port_base, devices=None, canary=CANARY, light=False, salt=None, monitoring=False):
        self.tmp = tmp
        self.salt = salt  # the fleet file's salt; None: pick_salt's for the default waves and devices, else "lab"
        self.devices = devices or DEVICES
        self.canary = canary
        self.light = light  # the light workload of tests/support/light, built by rollout_setup.yml
        self.name = name
        self.port_base = port_base
        self.registry_port = port_base + 90
        self.alertmanager_port = port_base + 91
        self.prometheus_port = port_base + 92
        self.monitoring = monitoring  # Prometheus on the hub (test_monitoring.py)
        self.published = set()
        self.fresh = False
        self.tags = {}
        self.inventory = os.path.join(tmp, "hosts.yml")
        self.releases = os.path.join(tmp, "releases")
        self.records = os.path.join(tmp, "rollouts")
        self.approvals = os.path.join(tmp, "approvals")
        self.fleet_config = os.path.join(tmp, "edge.fleet.yml")
        self.vars_file = os.path.join(tmp, "vars.yml")
        self.lab_vars = lab_args(name, port_base, self.inventory, lab_devices_per_site=len(self.devices),
                                 lab_image_packages=LAB_PACKAGES)
        self.outputs = []

    # -- the lab ----------------------------------------------------------------------------------------------------

    def up(self):
        """A new lab (an old one of the same name is removed first), hub and devices prepared (rollout_setup.yml)."""
        self.write_vars()
        self.down()
        self.published = set()
        up = ansible("ansible-playbook", "playbooks/lab/up.yml", *self.lab_vars)
        assert up.rc == 0, up.out[-3000:]
        self.write_fleet("lab")
        setup = self.playbook("tests/integration/playbooks/rollout_setup.yml")
        assert setup.rc == 0, setup.out[-5000:]
        self.fresh = True

    def publish(self, *releases):
        """Publish the sample releases not published yet (a copy of each manifest, for publish.yml's digests).

        One after the other: the registry (filesystem storage) answered 500 to a manifest read while another
        publication pushed the same layers (seen once when five ran side by side)."""
        for release in releases:
            if release in self.published:
                continue
            if not os.path.exists(self.manifest(release)):
                shutil.copyfile(source_manifest(release), self.manifest(release))
            run = self.playbook("playbooks/registry/publish.yml", "-e", "release_manifest=%s" % self.manifest(release))
            assert run.rc == 0, (release, run.out[-3000:])
            self.published.add(release)

    def start_from(self, release, *also):
        """Every device on ``release`` (published with ``also``), the fleet file a lab one without extra tags: where a
        module's tests start when they run after others on the same lab, or alone."""
        self.fresh = False
        self.publish(release, *also)
        self.tags = {}
        self.write_fleet("lab")
        if not all(self.running_release(device)[0] == release for device in self.devices):
            start = self.rollout(release, *waived())
            assert start.rc == 0, start.out[-6000:]
        self.assert_all_on(release, "the starting point")
        return self

    def down(self):
        return ansible("ansible-playbook", "playbooks/lab/down.yml", *self.lab_vars)

    def write_vars(self):
        data = {
            "edgeops_site": "site01",
            "registry_pki_dir": os.path.join(self.tmp, "pki", "site01"),
            "registry_address": "site01-hub:5000",
            "registry_users": [{"name": "publisher", "password": SECRETS["push"]},
                               {"name": "puller", "password": SECRETS["pull"]}],
            "registry_bcrypt_cost": 5,
            "registry_pull_user": "puller", "registry_pull_password": SECRETS["pull"],
            "registry_push_user": "publisher", "registry_push_password": SECRETS["push"],
            "registry_push_address": "127.0.0.1:%d" % self.registry_port,
            "workloads_secrets": {"dashboard_token": SECRETS["token"]},
            "docker_engine_default_ulimits": {"nofile": {"soft": 16384, "hard": 20000}},
            # No KVM in the lab (nested KVM hangs): the VMs of test_rollout_vms.py run under TCG.
            "workloads_vm_domain_type": "qemu",
            "rollout_test_releases": self.releases,
            "rollout_test_release_names": [],  # copied by publish()
            "rollout_test_light_images": self.light,
            "rollout_test_monitoring": self.monitoring,
            # Node exporter on every device, watched by the agent as its monitor (the monitor rule).
            "edgeops_node_exporter": True,
            # Prometheus on the hub (with monitoring): scraped and judged every 5 s, alerts after 10 s, so that a test
            # sees them within a minute. The rollback window stays the default (15m): the canary's rollback happens
            # while its node exporter is down, and shows as an increase only across that gap.
            "edgeops_prometheus": self.monitoring,
            "prometheus_scrape_interval": "5s",
            "prometheus_evaluation_interval": "5s",
            "prometheus_alert_device_down_for": "10s",
            "prometheus_alert_health_failing_for": "10s",
            "prometheus_alert_metrics_missing_for": "30s",
            "prometheus_alert_generation_skew_for": "30s",
            "rollout_record_dir": self.records,
            "rollout_approvals_dir": self.approvals,
            "rollout_registry_access": {"site01-hub:5000": "127.0.0.1:%d" % self.registry_port},
            "rollout_alertmanager_url": "http://127.0.0.1:%d" % self.alertmanager_port,
            # The controller's own probe of every device: its SSH port answers.
            "rollout_controller_probes": [{"name": "ssh-port", "type": "tcp", "host": "{{ ansible_host }}",
                                           "port": "{{ ansible_port }}", "retries": 3, "interval": 1}],
        }
        with open(self.vars_file, "w") as handle:
            yaml.safe_dump(data, handle)

    def write_fleet(self, environment):
        devices = {}
        for index, name in enumerate(self.devices):
            tags = ["line-a"] + (["canary"] if name == self.canary else []) + self.tags.get(name, [])
            devices[name] = {"site": "site01", "address": "127.0.0.1", "port": self.port_base + index + 1, "tags": tags}
        fleet = {"version": 1,
                 "sites": {"site01": {"registry": "site01-hub:5000"}},
                 "devices": devices,
                 "rollout": {"waves": self.waves,
                             "salt": self.salt or (self.pick_salt(devices) if (self.waves, self.devices) == (WAVES, DEVICES)
                                                   else "lab"),
                             "soak": 5,
                             "failure_threshold": 10, "min_executed": 1, "unreachable": "fail",
                             "confirm_timeout": CONFIRM_TIMEOUT, "environment": environment}}
        with open(os.path.join(self.tmp, "fleet.yml"), "w") as handle:
            yaml.safe_dump(fleet, handle)
        with open(self.fleet_config, "w") as handle:
            handle.write("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n")

    def wave_of(self):
        """Each device's wave as the fleet file written last assigns it."""
        from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import assign_waves, load_fleet
        with open(os.path.join(self.tmp, "fleet.yml")) as handle:
            return assign_waves(load_fleet(yaml.safe_load(handle)))

    @staticmethod
    def pick_salt(devices):
        """A salt that puts two devices in wave 1 and one in wave 2 (a wave with a device that still confirms beside
        one that fails, and a wave after it that must never start)."""
        from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import assign_waves, load_fleet
        for n in range(200):
            salt = "lab-%d" % n
            fleet = load_fleet({"sites": {"site01": {}}, "devices": devices,
                                "rollout": {"waves": WAVES, "salt": salt}})
            waves = assign_waves(fleet)
            if sorted(waves.values()) == [0, 1, 1, 2]:
                return salt
        raise AssertionError("no salt gives waves of 1, 2 and 1 devices")

    # -- driving it -------------------------------------------------------------------------------------------------

    def manifest(self, release):
        return os.path.join(self.releases, release + ".yml")

    def derive(self, base, release, change):
        """A copy of a published release manifest under a new release id, changed by change(manifest)."""
        with open(self.manifest(base)) as handle:
            manifest = yaml.safe_load(handle)
        manifest["release"] = release
        change(manifest)
        with open(self.manifest(release), "w") as handle:
            yaml.safe_dump(manifest, handle)

    def playbook(self, playbook, *args):
        run = ansible("ansible-playbook", "-i", self.inventory, "-i", self.fleet_config, "-e", "@" + self.vars_file,
                      playbook, *args)
        self.outputs.append(run.out)
        return run

    def rollout(self, release, *args):
        return self.playbook("playbooks/rollout.yml", "-e", "rollout_release_file=%s" % self.manifest(release), *args)

    def record(self, rollout_id):
        path = os.path.join(self.records, rollout_id + ".json")
        # A rollout refused before it began has no record: say why, from the last run's output.
        assert os.path.exists(path), "no record %s; the last run ended with:\n%s" % (
            path, self.outputs[-1][-4000:] if self.outputs else "(nothing run)")
        with open(path) as handle:
            return json.load(handle)

    def dexec(self, device, *argv, **kwargs):
        return subprocess.run(["docker", "exec", "%s-%s" % (self.name, device)] + list(argv), capture_output=True,
                              text=True, timeout=kwargs.get("timeout", 120), check=False)

    def listing(self, device):
        out = self.dexec(device, "edgeops-gen", "list")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def running_release(self, device):
        state = self.listing(device)
        by_id = dict((g["id"], g) for g in state["generations"])
        return by_id[state["current"]]["release"] if state["current"] else None, state

    def ever_switched(self, device, release):
        """Whether the device ever ran the release (a generation of it that got past 'staged')."""
        return [g for g in self.listing(device)["generations"] if g["release"] == release and g.get("state") != "staged"]

    def assert_all_on(self, release, context=""):
        for device in self.devices:
            running, state = self.running_release(device)
            assert running == release, (device, context, state)
            assert state["current"] == state["confirmed"] and state["pending"] is None, (device, state)

    def alerts(self, release):
        url = "http://127.0.0.1:%d/api/v2/alerts?filter=%s" % (
            self.alertmanager_port, urllib.request.quote('release="%s"' % release))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return json.loads(opener.open(url, timeout=10).read().decode())

    def assert_no_secret_anywhere(self):
        texts = list(self.outputs)
        for root, _dirs, files in os.walk(self.records):
            for name in files:
                with open(os.path.join(root, name)) as handle:
                    texts.append(handle.read())
        for key, secret in SECRETS.items():
            found = any(secret in text for text in texts)  # a boolean: a failing assert must not print the value
            assert not found, "the %s secret is in a play's output or a rollout record" % key


def source_manifest(release):
    """Where a release's manifest is kept: the light ones in tests/support/light, the AI samples in samples/."""
    if release.startswith("light-"):
        return os.path.join(REPO, "tests", "support", "light", "releases", release + ".yml")
    return os.path.join(REPO, "samples", "releases", release + ".yml")


def waived(**policy):
    return ["-e", json.dumps({"rollout_policy": dict(policy, approval_waived=True)})]
