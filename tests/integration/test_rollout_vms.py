# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A release with a container and a VM through playbooks/rollout.yml, on the rollout lab (after the other rollout
tests): real TCG guests (the guest of scripts/build_guest_image.sh, Debian's kernel and busybox) on every device.

The good release reaches every device through every wave, each device running the AI sample's containers beside a
guest that answers with its release. A release whose guest never becomes healthy stops at the canary: the canary's
own gate fails on the guest's probe and it returns to the previous generation's domain and overlay (the guest
answers with the previous release), no other device ever switches to it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

import pytest

from conftest import REPO
from rollout_lab import CANARY, DEVICES, waived

BASELINE = "demo-1.1.0"
VM_GOOD = "demo-1.1.0-vm"
VM_BAD = "demo-1.1.0-vm-bad"


def guest_image():
    """The guest image's directory and {file: sha256} (built here once, then found in the cache by its recipe)."""
    out = subprocess.run([os.path.join(REPO, "scripts", "build_guest_image.sh")], capture_output=True, text=True,
                         timeout=1200, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    directory = out.stdout.strip().splitlines()[-1]
    with open(os.path.join(directory, "SHA256SUMS")) as handle:
        sums = dict(reversed(line.split()) for line in handle if line.strip())
    return directory, sums


def vm(sums, release, serve=True, retries=40):
    """The VM of the test releases: the guest serves its release id on port 80 (unless it is the bad one)."""
    script = "#!/bin/sh\necho %s > /srv/www/release\n%s" % (
        release, "httpd -p 80 -h /srv/www\n" if serve else "echo 'this release serves nothing'\n")
    return {"vcpus": 1, "memory": "128m",
            "image": {"file": "edgeops-guest.qcow2", "sha256": sums["edgeops-guest.qcow2"]},
            "kernel": {"file": "edgeops-guest.vmlinuz", "sha256": sums["edgeops-guest.vmlinuz"]},
            "initrd": {"file": "edgeops-guest.initrd", "sha256": sums["edgeops-guest.initrd"]},
            "address": "192.168.150.10/24", "ports": ["8090:80"], "user_data": script,
            "probes": [{"name": "health", "type": "http", "url": "http://192.168.150.10/health", "body": "ok",
                        "retries": retries, "interval": 2, "timeout": 3}]}


@pytest.fixture(scope="module")
def lab(rollout_lab):
    lab = rollout_lab
    lab.fresh = False
    lab.publish(BASELINE)
    lab.tags = {}
    lab.write_fleet("lab")
    if not all(lab.running_release(device)[0] == BASELINE for device in DEVICES):
        start = lab.rollout(BASELINE, *waived())
        assert start.rc == 0, start.out[-6000:]
    directory, sums = guest_image()
    images = [{"name": name, "src": os.path.join(directory, name), "sha256": digest} for name, digest in sorted(sums.items())]
    # vms_memory_limit live: the lab's containers cannot raise QEMU's locked-memory limit (molecule/vms/molecule.yml).
    settings = {"vms_images": images, "vms_budget": {"vcpus": 1, "memory": "512m"}, "vms_memory_limit": "live"}
    setup = lab.playbook("tests/integration/playbooks/vms_setup.yml", "-e", json.dumps(settings))
    assert setup.rc == 0, setup.out[-5000:]
    lab.derive(BASELINE, VM_GOOD, lambda manifest: manifest.update(vms={"inspector": vm(sums, VM_GOOD)}))
    lab.derive(BASELINE, VM_BAD, lambda manifest: manifest.update(
        vms={"inspector": vm(sums, VM_BAD, serve=False, retries=10)}))
    return lab


def guest_says(lab, device):
    """What the device's guest answers (asked from the device: the lab's network rule)."""
    code = ("import urllib.request as u; print(u.build_opener(u.ProxyHandler({})).open("
            "'http://192.168.150.10/release', timeout=5).read().decode().strip())")
    out = lab.dexec(device, "python3", "-c", code)
    return out.stdout.strip() if out.returncode == 0 else "unreachable: " + out.stderr.strip()[-200:]


def test_a_release_with_a_container_and_a_vm_goes_through_every_wave(lab):
    run = lab.rollout(VM_GOOD, *waived())
    assert run.rc == 0, run.out[-6000:]
    record = lab.record(VM_GOOD)
    assert record["status"] == "completed", record
    assert [w["wave"] for w in record["waves"]] == [0, 1, 2]
    lab.assert_all_on(VM_GOOD)
    for device in DEVICES:
        assert guest_says(lab, device) == VM_GOOD, device
        containers = lab.dexec(device, "docker", "ps", "--filter", "status=running", "--format", "{{.Names}}")
        assert "edgeops-predictor-1" in containers.stdout.split(), (device, containers.stdout)
        domains = lab.dexec(device, "virsh", "list", "--name")
        assert domains.stdout.split() == ["inspector"], (device, domains.stdout)


def test_a_bad_vm_release_stops_at_the_canary_and_every_device_goes_back(lab):
    run = lab.rollout(VM_BAD, *waived())
    assert run.rc != 0, run.out[-6000:]
    record = lab.record(VM_BAD)
    assert record["status"] == "aborted", record
    assert record["reason"].startswith("canary %s failed: " % CANARY), record["reason"]
    assert "vm-inspector-health" in record["reason"], record["reason"]
    assert [w["wave"] for w in record["waves"]] == [0]
    for device in DEVICES:
        if device != CANARY:
            assert not lab.ever_switched(device, VM_BAD), (device, lab.listing(device))
    lab.assert_all_on(VM_GOOD, VM_BAD)
    # The canary's guest is the previous generation's again (its domain and overlay), without drift.
    assert guest_says(lab, CANARY) == VM_GOOD
    assert lab.listing(CANARY)["drift"] == []
