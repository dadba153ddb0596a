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
import sys

import pytest

from conftest import REPO
from rollout_lab import CANARY, DEVICES, waived

sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from vm_guest import guest_image, guest_vm, vms_images  # noqa: E402  (tests/support)

BASELINE = "demo-1.1.0"
VM_GOOD = "demo-1.1.0-vm"
VM_BAD = "demo-1.1.0-vm-bad"


@pytest.fixture(scope="module")
def lab(rollout_lab):
    lab = rollout_lab.start_from(BASELINE)
    directory, sums = guest_image()
    # vms_memory_limit live: the lab's containers cannot raise QEMU's locked-memory limit (molecule/vms/molecule.yml).
    settings = {"vms_images": vms_images(directory, sums), "vms_budget": {"vcpus": 1, "memory": "512m"},
                "vms_memory_limit": "live"}
    setup = lab.playbook("tests/integration/playbooks/vms_setup.yml", "-e", json.dumps(settings))
    assert setup.rc == 0, setup.out[-5000:]
    lab.derive(BASELINE, VM_GOOD, lambda manifest: manifest.update(vms={"inspector": guest_vm(sums, VM_GOOD)}))
    lab.derive(BASELINE, VM_BAD, lambda manifest: manifest.update(
        vms={"inspector": guest_vm(sums, VM_BAD, serve=False, retries=10)}))
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
