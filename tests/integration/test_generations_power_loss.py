# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Power loss during a switch or a rollback, on a real lab device.

The device container is killed with SIGKILL (no shutdown, like a pulled plug, and its nested
dockerd dies with it) at a random moment of a switch or a rollback, then started again. After
boot recovery it must run exactly one whole generation: the one both pointers name, with that
generation's files, nftables table and containers (``edgeops-gen verify``), the workload serving
that release, and its health checks passing. Also: greenboot's rule at boot.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import random
import subprocess
import time

import pytest

from conftest import LAB_PACKAGES, ansible

LAB = "edgeops-powertest"
# Clear of every other lab the suite runs side by side (the two-site lab's site02 takes 43100-43199).
PORT_BASE = "43800"
DEVICE = LAB + "-site01-dev01"
TRIALS = int(os.environ.get("EDGEOPS_POWER_LOSS_TRIALS", "20"))


def dexec(*argv, timeout=300):
    return subprocess.run(["docker", "exec", DEVICE] + list(argv), capture_output=True, text=True,
                          timeout=timeout, check=False)


def listing():
    out = dexec("edgeops-gen", "list")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def served_release():
    """What the workload answers on its port (from inside the device, the lab's network rule)."""
    code = ("import urllib.request as u; print(u.build_opener(u.ProxyHandler({})).open("
            "'http://127.0.0.1:8080/', timeout=5).read().decode().strip())")
    out = dexec("python3", "-c", code)
    return out.stdout.strip() if out.returncode == 0 else "unreachable: " + out.stderr.strip()[-200:]


def boot_again():
    """Start the killed device and wait until boot recovery (a oneshot unit) has finished."""
    subprocess.run(["docker", "start", DEVICE], check=True, capture_output=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        out = dexec("systemctl", "is-system-running", "--wait", timeout=200)
        if out.stdout.strip() in ("running", "degraded"):
            return out.stdout.strip()
        time.sleep(1)
    raise AssertionError("device did not finish booting")


def assert_one_whole_generation(context):
    log = dexec("journalctl", "-b", "-u", "edgeops-boot", "-o", "cat", "--no-pager").stdout[-3000:]
    context = "%s\n--- boot recovery log:\n%s" % (context, log)
    state = listing()
    release = {g["id"]: g["release"] for g in state["generations"]}
    assert state["current"] == state["confirmed"], (context, state)
    assert state["pending"] is None, (context, state)
    assert state["drift"] == [], (context, state["drift"])
    verify = dexec("edgeops-gen", "verify")
    assert verify.returncode == 0, (context, verify.stdout)
    assert served_release() == "release " + release[state["current"]], context
    health = dexec("edgeops-gen", "health")
    assert health.returncode == 0, (context, health.stdout)
    return state["current"]


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    inventory = str(tmp_path_factory.mktemp("lab") / "hosts.yml")
    lab_vars = ["-e", "lab_name=" + LAB, "-e", "lab_ssh_port_base=" + PORT_BASE, "-e", "lab_inventory_file=" + inventory,
                "-e", "lab_devices_per_site=1", "-e", "lab_hubs=false",
                "-e", json.dumps({"lab_image_packages": LAB_PACKAGES})]
    up = ansible("ansible-playbook", "playbooks/lab/up.yml", *lab_vars)
    assert up.rc == 0, up.out
    setup = ansible("ansible-playbook", "-i", inventory, "tests/integration/playbooks/generations_setup.yml")
    assert setup.rc == 0, setup.out
    yield inventory
    ansible("ansible-playbook", "playbooks/lab/down.yml", *lab_vars)


def test_kill_during_switch_or_rollback_leaves_one_whole_generation(device):
    start = assert_one_whole_generation("before the trials")
    ids = sorted(g["id"] for g in listing()["generations"])
    # How long a switch takes here: kill moments are drawn from that window (plus a margin).
    began = time.monotonic()
    other = [i for i in ids if i != start][0]
    assert dexec("edgeops-gen", "switch", str(other), "120").returncode == 0
    window = time.monotonic() - began
    assert dexec("edgeops-gen", "confirm", str(other)).returncode == 0
    rng = random.Random(int(os.environ.get("EDGEOPS_POWER_LOSS_SEED", "20261123")))
    outcomes = []
    # Nothing runs between trials: the state a trial starts from is the one the trial before checked after its boot.
    running = assert_one_whole_generation("before the first trial")
    for trial in range(TRIALS):
        target = [i for i in ids if i != running][0]
        operation = ["switch", str(target), "120"] if trial % 2 == 0 else ["rollback", str(target)]
        delay = rng.uniform(0, window * 1.2)
        proc = subprocess.Popen(["docker", "exec", DEVICE, "edgeops-gen"] + operation,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        subprocess.run(["docker", "kill", "-s", "KILL", DEVICE], check=True, capture_output=True)
        proc.wait(timeout=60)
        boot_again()
        after = assert_one_whole_generation("after trial %d (%s killed at %.2f s)" % (trial, operation[0], delay))
        assert after in (running, target)
        outcomes.append((operation[0], round(delay, 2), "new" if after == target else "old"))
        running = after
    print("\nswitch window %.2f s; trials (operation, kill at s, generation after boot): %s" % (window, outcomes))
    assert len(outcomes) >= 20
    # A switch is never confirmed before the kill, so boot always goes back to the old generation;
    # a rollback is committed before it activates, so some rollbacks finish at boot.
    assert all(o[2] == "old" for o in outcomes if o[0] == "switch")
    incidents = [json.loads(line)["what"] for line in dexec("edgeops-gen", "incidents").stdout.splitlines()]
    assert incidents.count("boot-revert") >= 1


def test_generation_failing_health_at_three_boots_is_rolled_back(device):
    running = assert_one_whole_generation("before the boot-failure test")
    history = listing()["history"]
    assert len(history) >= 2, history
    previous = [g for g in reversed(history) if g != running][0]
    assert dexec("touch", "/etc/edgeops-sample/fail-health").returncode == 0
    try:
        for boot in (1, 2, 3):
            subprocess.run(["docker", "restart", DEVICE], check=True, capture_output=True, timeout=120)
            boot_again()
            state = listing()
            if boot < 3:
                assert state["current"] == running, (boot, state)
                assert state["boot_failures"][str(running)] == boot
        assert state["current"] == state["confirmed"] == previous, state
        last = json.loads(dexec("edgeops-gen", "incidents").stdout.splitlines()[-1])
        assert last["what"] == "boot-rollback" and last["from"] == running and last["to"] == previous
        # The journal may take a moment to show the line under load: read until it is there or a deadline passes.
        deadline = time.monotonic() + 30
        journal = dexec("journalctl", "-t", "edgeops-gen", "-o", "cat", "--no-pager").stdout
        while "edgeops incident boot-rollback" not in journal and time.monotonic() < deadline:
            time.sleep(1)
            journal = dexec("journalctl", "-t", "edgeops-gen", "-o", "cat", "--no-pager").stdout
        assert "edgeops incident boot-rollback" in journal, journal[-2000:]
    finally:
        dexec("rm", "-f", "/etc/edgeops-sample/fail-health")
