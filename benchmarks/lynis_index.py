# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lynis hardening index of a lab device before and after the base_os role.

Brings up its own one-device lab, installs Debian's `lynis` on the device, runs
    lynis audit system --quick --no-colors
reads the index from /var/log/lynis-report.dat, applies edgeops.fleet.base_os with its defaults
(over SSH, as site.yml does), audits again, and prints both figures and the Lynis findings the role
removed or added.

Usage (from the repository root, with .venv/bin on PATH):
    python benchmarks/lynis_index.py [--keep-lab] [--json FILE]
The device is a container sharing this machine's kernel: kernel tests see the host's values (see
roles/base_os/README.md).
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = "edgeops-lynis"
DEVICE = LAB + "-site01-dev01"
PORT_BASE = "42450"
LYNIS = ["lynis", "audit", "system", "--quick", "--no-colors"]
PLAYBOOK = """- name: base_os with its defaults
  hosts: edge_devices
  become: true
  roles:
    - role: edgeops.fleet.base_os
"""


def sh(argv, check=True):
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        sys.exit("failed: %s\n%s%s" % (" ".join(argv), proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


def dexec(*argv, check=True):
    return sh(["docker", "exec", DEVICE] + list(argv), check=check)


def audit():
    """One Lynis run: hardening index, tests performed, warning and suggestion ids."""
    dexec(*LYNIS)
    report = {"warning": set(), "suggestion": set()}
    for line in dexec("cat", "/var/log/lynis-report.dat").stdout.splitlines():
        key, _sep, value = line.partition("=")
        if key == "hardening_index":
            report["index"] = int(value)
        elif key == "lynis_tests_done":
            report["tests"] = int(value)
        elif key in ("warning[]", "suggestion[]"):
            report[key[:-2]].add(value.split("|", 1)[0])
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="edgeops-lynis-")
    inventory = os.path.join(workdir, "hosts.yml")
    playbook = os.path.join(workdir, "base_os.yml")
    with open(playbook, "w") as handle:
        handle.write(PLAYBOOK)
    lab_vars = ["-e", "lab_name=" + LAB, "-e", "lab_ssh_port_base=" + PORT_BASE, "-e", "lab_inventory_file=" + inventory,
                "-e", "lab_devices_per_site=1", "-e", "lab_hubs=false"]
    print("setting up lab device %s ..." % DEVICE, flush=True)
    sh(["ansible-playbook", "playbooks/lab/up.yml"] + lab_vars)
    try:
        dexec("apt-get", "update", "-q")
        dexec("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", "lynis")
        version = dexec("lynis", "show", "version").stdout.strip()
        print("lynis %s: auditing before base_os ..." % version, flush=True)
        before = audit()
        print("applying edgeops.fleet.base_os (defaults) ...", flush=True)
        sh(["ansible-playbook", "-i", inventory, playbook])
        print("auditing after base_os ...", flush=True)
        after = audit()
        print()
        print("command:          %s" % " ".join(LYNIS))
        print("lynis version:    %s" % version)
        print("hardening index:  before %d, after %d (%+d)" % (before["index"], after["index"],
                                                               after["index"] - before["index"]))
        print("tests performed:  before %d, after %d" % (before.get("tests", 0), after.get("tests", 0)))
        for kind in ("warning", "suggestion"):
            print("%-17s before %d, after %d" % (kind + "s:", len(before[kind]), len(after[kind])))
            print("  resolved: %s" % (" ".join(sorted(before[kind] - after[kind])) or "-"))
            print("  new:      %s" % (" ".join(sorted(after[kind] - before[kind])) or "-"))
        if args.json:
            with open(args.json, "w") as handle:
                json.dump({"command": " ".join(LYNIS), "lynis": version,
                           "before": dict(before, warning=sorted(before["warning"]),
                                          suggestion=sorted(before["suggestion"])),
                           "after": dict(after, warning=sorted(after["warning"]),
                                         suggestion=sorted(after["suggestion"]))}, handle, indent=2)
    finally:
        if not args.keep_lab:
            sh(["ansible-playbook", "playbooks/lab/down.yml"] + lab_vars, check=False)


if __name__ == "__main__":
    main()
