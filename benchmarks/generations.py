# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark generations on a real lab device and print figures.

  activation to healthy  `edgeops-gen switch` (dead-man armed, pointer swap, files, nftables,
                         compose up --wait, local health checks), side by side with the same
                         containers replaced by a bare `docker compose up -d --wait`
  rollback to healthy    `edgeops-gen rollback <id>`
  dead-man revert        how long after the confirm timeout the device runs the old generation
                         again (with the timeout at its 15 s minimum)

Usage (from the repository root, with .venv/bin on PATH):
    python benchmarks/generations.py [--rounds 5] [--keep-lab]
Times are taken on the controller around `docker exec`, so SSH and Ansible are not counted.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = "edgeops-bench"
DEVICE = LAB + "-site01-dev01"
# The recipe the lab tests share (roles/lab/vars/test_image.yml: one image for all).
with open(os.path.join(REPO, "roles", "lab", "vars", "test_image.yml")) as _handle:
    PACKAGES = yaml.safe_load(_handle)["lab_test_image_packages"]


def sh(argv, check=True):
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        sys.exit("failed: %s\n%s%s" % (" ".join(argv), proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc


def dexec(*argv, check=True):
    return sh(["docker", "exec", DEVICE] + list(argv), check=check)


def timed(*argv):
    began = time.monotonic()
    dexec(*argv)
    return time.monotonic() - began


def state():
    return json.loads(dexec("edgeops-gen", "list").stdout)


def bare_compose_up(generation):
    gdir = "/var/lib/edgeops/generations/%d" % generation
    return ["docker", "compose", "-p", "edgeops", "--project-directory", gdir, "-f", gdir + "/compose.yaml",
            "up", "-d", "--remove-orphans", "--pull", "never", "--wait"]


def summary(name, values):
    return "%-34s median %6.2f s   min %6.2f s   max %6.2f s   (n=%d)" % (
        name, statistics.median(values), min(values), max(values), len(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep-lab", action="store_true")
    args = parser.parse_args()
    inventory = os.path.join(tempfile.mkdtemp(prefix="edgeops-bench-"), "hosts.yml")
    lab_vars = ["-e", "lab_name=" + LAB, "-e", "lab_ssh_port_base=43200", "-e", "lab_inventory_file=" + inventory,
                "-e", "lab_devices_per_site=1", "-e", "lab_hubs=false", "-e", json.dumps({"lab_image_packages": PACKAGES})]
    print("setting up lab device %s ..." % DEVICE, flush=True)
    sh(["ansible-playbook", "playbooks/lab/up.yml"] + lab_vars)
    sh(["ansible-playbook", "-i", inventory, "tests/integration/playbooks/generations_setup.yml"])
    try:
        ids = sorted(g["id"] for g in state()["generations"])[:2]
        switch, baseline, rollback, revert = [], [], [], []
        for _round in range(args.rounds):
            cur = state()["current"]
            other = [i for i in ids if i != cur][0]
            switch.append(timed("edgeops-gen", "switch", str(other), "120"))
            dexec("edgeops-gen", "confirm", str(other))
            rollback.append(timed("edgeops-gen", "rollback", str(cur)))
            # The same replacement of the same containers, without generations: compose alone.
            baseline.append(timed(*bare_compose_up(other)))
            timed(*bare_compose_up(cur))  # containers back to what the confirmed generation says
        for _round in range(max(1, args.rounds // 2)):
            cur = state()["current"]
            other = [i for i in ids if i != cur][0]
            began = time.monotonic()
            dexec("edgeops-gen", "switch", str(other), "15")
            while state()["current"] != cur:  # `list` waits for the revert to finish (shared lock)
                time.sleep(0.2)
            revert.append(time.monotonic() - began - 15)
        print()
        print(summary("activation to healthy (switch)", switch))
        print(summary("  bare docker compose up --wait", baseline))
        print("  ratio switch / bare compose       %.2f" % (statistics.median(switch) / statistics.median(baseline)))
        print(summary("rollback to healthy", rollback))
        print(summary("dead-man revert beyond timeout", revert))
    finally:
        if not args.keep_lab:
            sh(["ansible-playbook", "playbooks/lab/down.yml"] + lab_vars, check=False)


if __name__ == "__main__":
    main()
