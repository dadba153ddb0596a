# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A firewall change that locks the controller out reverts by itself, on a real lab device.

The firewall role applies, commit-confirmed with a 20 s timeout, a table that accepts SSH only from a network the
controller is not in. While it runs, a thread polls the device's SSH banner through its published port (as the
controller reaches it), so the test sees the lockout happen and end. Asserted: the run fails with a message that
reports the revert; the device restored the previous table within timeout + 10 s (device timestamps, and the
banner's outage measured on the controller); the controller logs in again; the previous table is back unchanged.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket
import subprocess
import threading
import time

import pytest

from conftest import LAB_PACKAGES, ansible

LAB = "edgeops-fwtest"
PORT_BASE = "43550"
DEVICE = LAB + "-site01-dev01"
SSH_PORT = int(PORT_BASE) + 1
TIMEOUT = 20


def banner(timeout=2.0):
    """Whether the device's sshd greets a new connection (through the published port, like the controller)."""
    try:
        with socket.create_connection(("127.0.0.1", SSH_PORT), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


class BannerWatch(threading.Thread):
    """Samples the SSH banner once a second until stopped: (controller time, greeted)."""

    def __init__(self):
        super(BannerWatch, self).__init__(daemon=True)
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.samples.append((time.monotonic(), banner()))
            self.halt.wait(1.0)

    def outage(self):
        """(start, end) of the first run of samples without a banner, end None if it never came back."""
        start = end = None
        for when, greeted in self.samples:
            if not greeted and start is None:
                start = when
            elif greeted and start is not None:
                end = when
                break
        return start, end


def table(listing_flags=("-s", "-t")):
    out = subprocess.run(["docker", "exec", DEVICE, "nft"] + list(listing_flags) + ["list", "table", "inet", "edgeops_firewall"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fwlab")
    inventory = str(tmp / "hosts.yml")
    lab_vars = ["-e", "lab_name=" + LAB, "-e", "lab_ssh_port_base=" + PORT_BASE, "-e", "lab_inventory_file=" + inventory,
                "-e", "lab_devices_per_site=1", "-e", "lab_hubs=false", "-e", json.dumps({"lab_image_packages": LAB_PACKAGES})]
    up = ansible("ansible-playbook", "playbooks/lab/up.yml", *lab_vars)
    assert up.rc == 0, up.out
    yield {"inventory": inventory, "result": str(tmp / "lockout.json")}
    ansible("ansible-playbook", "playbooks/lab/down.yml", *lab_vars)


def test_a_table_that_locks_the_controller_out_reverts_by_itself(device):
    play = ["-i", device["inventory"], "tests/integration/playbooks/firewall_lockout.yml",
            "-e", "firewall_lockout_result=" + device["result"]]
    first = ansible("ansible-playbook", *play)
    assert first.rc == 0, first.out
    assert first.recap["site01-dev01"]["changed"] > 0
    good = table()
    assert "7000" in good and "ct state new ip saddr @ssh_sources_v4" in good

    watch = BannerWatch()
    watch.start()
    began = time.monotonic()
    locked = ansible("ansible-playbook", *(play + ["-e", "firewall_lockout_test=true"]))
    took = time.monotonic() - began
    # The controller logs in again over a new connection.
    ping = ansible("ansible", "-i", device["inventory"], "site01-dev01", "-m", "ansible.builtin.ping")
    watch.halt.set()
    watch.join()

    assert locked.rc != 0, locked.out
    assert "(reverted: true)" in locked.out and "restored the previous table by itself" in locked.out, locked.out
    with open(device["result"]) as handle:
        result = json.load(handle)
    assert result["reverted"] is True and result["revert_outcome"] == "restored", result
    assert result["confirmed"] is False and result["fresh_connection"] is True
    # The device's own clock: restored within the timeout + 10 s of applying the change, and not before the
    # timeout counted from when the apply was due (a late apply timer shortens the measured window, not the wait).
    restored_after = result["reverted_at"] - result["applied_at"]
    assert restored_after <= TIMEOUT + 10, result
    assert result["reverted_at"] - result["apply_at"] >= TIMEOUT - 0.5, result
    # The controller's view: new logins were refused for about the timeout, then came back.
    start, end = watch.outage()
    assert start is not None, "the new table never blocked the SSH banner: %s" % watch.samples
    assert end is not None, "SSH never came back: %s" % watch.samples[-5:]
    assert end - start <= TIMEOUT + 10, (end - start, watch.samples)
    assert ping.rc == 0, ping.out
    # The first table is back as it was; the refused one left nothing behind.
    assert table() == good
    leftovers = subprocess.run(["docker", "exec", DEVICE, "sh", "-c", "ls /run/edgeops-nftables; systemctl list-timers "
                                "--all --no-legend 'edgeops-nft-*'"], capture_output=True, text=True, timeout=30,
                               check=False)
    assert leftovers.stdout.split() == ["inet-edgeops_firewall.lock"], leftovers.stdout
    print("\nlockout run %.1f s; device restored the table %.1f s after applying it; SSH banner out for %.1f s"
          % (took, restored_after, end - start))
