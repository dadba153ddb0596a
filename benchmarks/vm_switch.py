# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark a VM generation switch on a real lab device (TCG guests) beside a container switch, and print figures.

  VM switch to healthy      `edgeops-gen switch N 120` from a generation whose VM differs (vm-a -> vm-b: the same
                            guest image, other user_data, so each generation has its own overlay and seed): the
                            running guest is destroyed, defined and started again (`virsh start`, then
                            `memtune --live`), then the generation's health checks run, among them the HTTP probe
                            to the guest (http://192.168.150.10/health, retries 60, interval 1 s, timeout 3 s), so
                            the command returns when the guest is healthy
    QEMU start -> answer    of that: from the start of the QEMU process (forked by `virsh start`, its start time read
                            from /proc) to the guest's first HTTP answer with the new release, seen by a poller inside
                            the device (one GET every 0.1 s, timeout 0.5 s); the two phases around it are printed too
  VM rollback to healthy    `edgeops-gen rollback <id>` back to vm-a (its own overlay); rollback runs the
                            generation's health checks as switch does, so it too returns when the guest is healthy
                            (the poller takes the guest's first answer there as well)
  container switch          the same as benchmarks/generations.py on the same device: `edgeops-gen switch` between
                            two releases of the sample web container (images imported on the device from
                            busybox-static, no registry), and `edgeops-gen rollback` back; with no VM running
  ratio                     VM / container, medians

Usage (from the repository root, with .venv/bin on PATH):
    python benchmarks/vm_switch.py [--rounds 3] [--keep-lab]
Setup: a one-device lab (playbooks/lab/up.yml, the shared test image), tests/integration/playbooks/generations_setup.yml
(agent, sample images, r1 and r2 staged, r1 confirmed), then a playbook with the lab's vm_host stand-ins, the agent,
the vms role (the guest image of scripts/build_guest_image.sh) and vm-a, vm-b staged (rendered on the controller by
the collection's render_release). The first switch to vm-a is untimed (the guest's first boot after the containers).
Times are taken on the controller around `docker exec`, so SSH and Ansible are not counted; the phases use
CLOCK_BOOTTIME, which the controller, the device and /proc/<pid>/stat share (one kernel).
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, "collections")
sys.path.insert(0, COLLECTIONS)

from ansible_collections.edgeops.fleet.plugins.plugin_utils._workloads import render_release  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from vm_guest import guest_image, guest_vm, vms_images  # noqa: E402  (tests/support)

LAB = "edgeops-vmbench"
DEVICE = LAB + "-site01-dev01"
VM = "inspector"
GUEST = "http://192.168.150.10"
# The recipe the lab tests share (roles/lab/vars/test_image.yml: one image for all).
with open(os.path.join(REPO, "roles", "lab", "vars", "test_image.yml"), encoding="utf-8") as _handle:
    PACKAGES = yaml.safe_load(_handle)["lab_test_image_packages"]

# Run inside the device: GET <guest>/release until it answers argv[1]; print CLOCK_BOOTTIME of that answer.
POLLER = """
import sys, time, urllib.request as u
opener, want, end = u.build_opener(u.ProxyHandler({})), sys.argv[1], time.monotonic() + 300
while time.monotonic() < end:
    try:
        if opener.open(sys.argv[2] + "/release", timeout=0.5).read().decode().strip() == want:
            print(time.clock_gettime(time.CLOCK_BOOTTIME))
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit("no answer %r" % want)
"""
# Run inside the device: the CLOCK_BOOTTIME at which the guest's QEMU process started (field 22 of its stat).
QEMU_START = """
import os
pid = open("/run/libvirt/qemu/%s.pid").read().strip()
fields = open("/proc/%%s/stat" %% pid).read().rsplit(")", 1)[1].split()
print(int(fields[19]) / os.sysconf("SC_CLK_TCK"))
""" % VM
GUEST_SAYS = """
import urllib.request as u
print(u.build_opener(u.ProxyHandler({})).open("%s/release", timeout=5).read().decode().strip())
""" % GUEST

PLAYBOOK = """---
- name: VM benchmark | the VM host and the VM releases staged
  hosts: edge_devices
  gather_facts: false
  tasks:
    - name: /dev/net/tun and writable network sysctls, at every boot (lab only)
      ansible.builtin.include_role:
        name: edgeops.fleet.lab
        tasks_from: vm_host

    - name: Generations agent
      ansible.builtin.include_role:
        name: edgeops.fleet.agent

    - name: The VM host
      ansible.builtin.include_role:
        name: edgeops.fleet.vms

    - name: Stage the VM releases (rendered on the controller)
      edgeops.fleet.generation:
        state: staged
        release: "{{ item }}"
      loop: "{{ vmbench_releases }}"
      loop_control:
        label: "{{ item.id }}"
"""


def sh(argv, check=True):
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        sys.exit("failed: %s\n%s%s" % (" ".join(argv), proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc


def dexec(*argv, check=True):
    return sh(["docker", "exec", DEVICE] + list(argv), check=check)


def boottime():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def timed(*argv):
    began = time.monotonic()
    out = dexec(*argv).stdout
    return time.monotonic() - began, json.loads(out)


def state():
    return json.loads(dexec("edgeops-gen", "list").stdout)


def generation_ids():
    return dict((g["release"], g["id"]) for g in state()["generations"])


def expect(release, generation, vm=True):
    """Untimed: the device runs ``generation`` without drift (and its guest answers with ``release``)."""
    now = state()
    if now["current"] != generation or now["drift"]:
        sys.exit("expected generation %d (%s), device has %s, drift %s" % (generation, release, now["current"], now["drift"]))
    if vm and dexec("python3", "-c", GUEST_SAYS).stdout.strip() != release:
        sys.exit("the guest does not answer %s" % release)


def vm_release(name, sums):
    """A release of one VM (tests/support/vm_guest.py's), rendered on the controller as the workloads role renders it
    (TCG: domain type qemu); its probe asks once a second."""
    vm = guest_vm(sums, name, retries=60, interval=1)
    return render_release({"release": name, "vms": {VM: vm}}, source=name, vm_domain_type="qemu")[0]


def vm_move(argv, release):
    """Time a switch or rollback to a VM generation; also when its QEMU started and when the guest first answered."""
    poller = subprocess.Popen(["docker", "exec", DEVICE, "python3", "-c", POLLER, release, GUEST],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        began = boottime()
        result = json.loads(dexec(*argv).stdout)
        ended = boottime()
        answered, err = poller.communicate(timeout=120)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
    if result.get("rolled_back"):
        sys.exit("%s rolled back: %s" % (" ".join(argv), result.get("reason")))
    if poller.returncode != 0:
        sys.exit("poller: %s" % err.strip())
    qemu = float(dexec("python3", "-c", QEMU_START).stdout)
    answered = float(answered)
    if not began <= qemu <= answered <= ended + 0.5:
        sys.exit("phases out of order: began %.2f, qemu %.2f, answered %.2f, ended %.2f" % (began, qemu, answered, ended))
    return ended - began, (qemu - began, answered - qemu, max(0.0, ended - answered)), result


def summary(name, values):
    return "%-34s median %6.2f s   min %6.2f s   max %6.2f s   (n=%d: %s)" % (
        name, statistics.median(values), min(values), max(values), len(values), " ".join("%.2f" % v for v in values))


def phases(name, rows):
    return [summary(name + label, [row[index] for row in rows]) for index, label in enumerate(
        ("  start -> QEMU process started", "  QEMU started -> first answer", "  first answer -> returned"))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep-lab", action="store_true")
    args = parser.parse_args()
    began = time.monotonic()
    work = tempfile.mkdtemp(prefix="edgeops-vmbench-")
    inventory = os.path.join(work, "hosts.yml")
    lab_vars = ["-e", "lab_name=" + LAB, "-e", "lab_ssh_port_base=45300", "-e", "lab_inventory_file=" + inventory,
                "-e", "lab_devices_per_site=1", "-e", "lab_hubs=false", "-e", json.dumps({"lab_image_packages": PACKAGES})]
    print("building (or finding) the guest image ...", flush=True)
    directory, sums = guest_image()
    releases = [vm_release(name, sums) for name in ("vm-a", "vm-b")]
    with open(os.path.join(work, "vmbench.yml"), "w", encoding="utf-8") as handle:
        handle.write(PLAYBOOK)
    with open(os.path.join(work, "vars.json"), "w", encoding="utf-8") as handle:
        json.dump({"vmbench_releases": releases, "vms_budget": {"vcpus": 1, "memory": "512m"},
                   # the lab's containers cannot raise QEMU's locked-memory limit: see molecule/vms/molecule.yml
                   "vms_memory_limit": "live",
                   "vms_images": vms_images(directory, sums)}, handle)
    print("setting up lab device %s ..." % DEVICE, flush=True)
    try:
        sh(["ansible-playbook", "playbooks/lab/down.yml"] + lab_vars, check=False)  # what a killed run left
        sh(["ansible-playbook", "playbooks/lab/up.yml"] + lab_vars)
        sh(["ansible-playbook", "-i", inventory, "tests/integration/playbooks/generations_setup.yml"])
        sh(["ansible-playbook", "-i", inventory, os.path.join(work, "vmbench.yml"), "-e", "@" + os.path.join(work, "vars.json")])
        ids = generation_ids()
        setup = time.monotonic() - began
        print("setup took %.0f s; generations %s" % (setup, json.dumps(ids, sort_keys=True)), flush=True)

        # Containers first (no VM is running yet), as benchmarks/generations.py does.
        c_switch, c_rollback = [], []
        for _round in range(args.rounds):
            cur = state()["current"]
            other = ids["r2"] if cur == ids["r1"] else ids["r1"]
            c_switch.append(timed("edgeops-gen", "switch", str(other), "120")[0])
            dexec("edgeops-gen", "confirm", str(other))
            expect("container", other, vm=False)
            c_rollback.append(timed("edgeops-gen", "rollback", str(cur))[0])
            expect("container", cur, vm=False)
        print("container rounds done", flush=True)

        # The guest's first boot (and the containers' removal): untimed.
        dexec("edgeops-gen", "switch", str(ids["vm-a"]), "120")
        dexec("edgeops-gen", "confirm", str(ids["vm-a"]))
        expect("vm-a", ids["vm-a"])
        v_switch, v_rollback, s_phases, r_phases, attempts = [], [], [], [], []
        for number in range(1, args.rounds + 1):
            seconds, split, _result = vm_move(["edgeops-gen", "switch", str(ids["vm-b"]), "120"], "vm-b")
            v_switch.append(seconds)
            s_phases.append(split)
            dexec("edgeops-gen", "confirm", str(ids["vm-b"]))
            expect("vm-b", ids["vm-b"])
            seconds, split, result = vm_move(["edgeops-gen", "rollback", str(ids["vm-a"])], "vm-a")
            v_rollback.append(seconds)
            r_phases.append(split)
            attempts.append([check["attempts"] for check in result["health"] if check["name"] == "vm-%s-health" % VM][0])
            expect("vm-a", ids["vm-a"])
            print("VM round %d done" % number, flush=True)

        print()
        print(summary("VM switch to healthy", v_switch))
        print("\n".join(phases("", s_phases)))
        print(summary("VM rollback to healthy", v_rollback))
        print("\n".join(phases("", r_phases)))
        print("  rollback: attempts of the guest's probe  %s" % " ".join(str(a) for a in attempts))
        print(summary("container switch to healthy", c_switch))
        print(summary("container rollback to healthy", c_rollback))
        print("ratio VM / container, switch          %.1f" % (statistics.median(v_switch) / statistics.median(c_switch)))
        print("ratio VM / container, rollback        %.1f" % (statistics.median(v_rollback) / statistics.median(c_rollback)))
        print("whole benchmark (setup %.0f s) took     %.0f s" % (setup, time.monotonic() - began))
    finally:
        if not args.keep_lab:
            sh(["ansible-playbook", "playbooks/lab/down.yml"] + lab_vars, check=False)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
