# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's cost of playbooks/rollout.yml at fleet scale: CPU seconds and peak RSS per 1,000 devices.

    python benchmarks/rollout_controller.py [--devices 1000 5000] [--forks 20] [--compare REV --compare-devices 200]

Only the controller is measured, so the device side is a STAND-IN (nothing here pretends to be a device test):
every device is ``ansible_connection: local`` and what would run on it answers as a healthy device does, at once:

  edgeops.fleet.generation_info  current = confirmed = generation 1, nothing pending
  edgeops.fleet.gated_switch     confirmed (switched, not rolled back)
  edgeops.fleet.generation       rolled back (only an abort would ask)
  role edgeops.fleet.workloads   staged as generation 2 (its controller-side validate.yml stays the real one)

Everything else is the collection's own: the fleet inventory plugin on a fleet file of N devices (12 per site), the
seven plays of playbooks/rollout.yml, the rollout role, rollout_record and the filters. The stand-ins live in a
temporary copy of the collection (symlinks to this checkout, the four replaced files written there).

Printed per run: wall time, controller CPU (ansible-playbook and every worker it forked: RUSAGE_CHILDREN of a
wrapper process), peak RSS (the largest of those processes), and CPU seconds per 1,000 devices. With --compare REV
the same is measured for the rollout role, playbook and filters of git revision REV (for example the one before
waves ran in batches) at --compare-devices devices and waves of at most --forks devices (REV may refuse larger ones),
side by side with this checkout on the same fleet.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

STAND_IN_NOTE = "# STAND-IN for the device side (benchmarks/rollout_controller.py): answers as a healthy device does.\n"

ACTION = STAND_IN_NOTE + '''
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        result.update(%s)
        return result
'''

STAND_INS = {
    "plugins/action/generation_info.py": ACTION % (
        'changed=False, current=1, confirmed=1, pending=None, incidents=[], generations=[]'),
    "plugins/action/gated_switch.py": ACTION % (
        'changed=True, outcome="confirmed", step=None, switched=True, rolled_back=False, reason="", '
        'generation=self._task.args.get("generation"), started="2026-01-01T00:00:00Z"'),
    "plugins/action/generation.py": ACTION % 'changed=True, current=self._task.args.get("generation")',
    "roles/workloads/tasks/main.yml": "---\n" + STAND_IN_NOTE + (
        "- name: STAND-IN - staged as generation 2\n"
        "  ansible.builtin.set_fact:\n"
        "    workloads_staged: {generation: 2, health_checks: []}\n"),
}

# Run in a wrapper process: the children's CPU and the largest child's RSS, for one ansible-playbook run.
WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT, check=False)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "wall": time.perf_counter() - start,
                  "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024.0}))
"""


def overlay(root, revision=None):
    """A collection tree under root: symlinks to this checkout, the stand-ins written, and with ``revision`` the
    rollout role, playbook and filters of that git revision instead of this checkout's."""
    tree = os.path.join(root, "ansible_collections", "edgeops", "fleet")
    os.makedirs(tree)
    replaced = set(STAND_INS)
    if revision:
        listing = subprocess.run(["git", "ls-tree", "-r", "--name-only", revision, "roles/rollout",
                                  "playbooks/rollout.yml", "plugins/filter/rollout.py"], cwd=REPO, capture_output=True, text=True, check=True)
        replaced |= set(listing.stdout.split())

    def link(relative):
        source = os.path.join(REPO, relative)
        target = os.path.join(tree, relative)
        if relative in replaced:
            return
        if any(r.startswith(relative + "/") for r in replaced):
            os.makedirs(target, exist_ok=True)
            for name in os.listdir(source):
                link(os.path.join(relative, name))
        elif not os.path.exists(target):
            os.symlink(source, target)

    for name in os.listdir(REPO):
        if name not in (".git", ".venv", "collections", ".suite", ".ci") and not name.startswith("."):
            link(name)
    for relative, text in STAND_INS.items():
        os.makedirs(os.path.dirname(os.path.join(tree, relative)), exist_ok=True)
        with open(os.path.join(tree, relative), "w") as handle:
            handle.write(text)
    if revision:
        for relative in sorted(replaced - set(STAND_INS)):
            content = subprocess.run(["git", "show", "%s:%s" % (revision, relative)], cwd=REPO, capture_output=True,
                                     check=True).stdout
            os.makedirs(os.path.dirname(os.path.join(tree, relative)), exist_ok=True)
            with open(os.path.join(tree, relative), "wb") as handle:
                handle.write(content)
    return tree


def fleet_file(path, devices, waves):
    per_site = 12
    fleet = {"profiles": {"stand-in": {"vars": {"ansible_connection": "local",
                                                "ansible_python_interpreter": sys.executable}}},
             "sites": dict(("site%04d" % s, {"registry": "site%04d-hub:5000" % s})
                           for s in range((devices + per_site - 1) // per_site)),
             "devices": {},
             "rollout": {"waves": waves, "soak": 0, "confirm_timeout": 30, "environment": "lab",
                         "approval_waived": True, "failure_threshold": 10}}
    for n in range(devices):
        fleet["devices"]["site%04d-dev%02d" % (n // per_site, n % per_site)] = {
            "site": "site%04d" % (n // per_site), "address": "127.0.0.1", "profile": "stand-in"}
    with open(path, "w") as handle:
        yaml.safe_dump(fleet, handle)


def manifest(path):
    """The sample release with made-up digests (the registry check is off: nothing is pulled), no secrets."""
    with open(os.path.join(REPO, "samples", "releases", "demo-1.1.0.yml")) as handle:
        data = yaml.safe_load(handle)
    for workload in data["workloads"].values():
        workload["digest"] = "sha256:" + "0" * 64
        workload.pop("secrets", None)  # nothing to deliver: no device
    with open(path, "w") as handle:
        yaml.safe_dump(data, handle)


def measure(work, label, devices, waves, forks, revision=None):
    root = os.path.join(work, label)
    os.makedirs(root)
    tree = overlay(os.path.join(root, "collections"), revision)
    fleet_file(os.path.join(root, "fleet.yml"), devices, waves)
    with open(os.path.join(root, "edge.fleet.yml"), "w") as handle:
        handle.write("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n")
    manifest(os.path.join(root, "release.yml"))
    with open(os.path.join(root, "ansible.cfg"), "w") as handle:
        handle.write("[defaults]\ncollections_path = %s\nforks = %d\ninternal_poll_interval = 0.02\n"
                     "inject_facts_as_vars = False\nhost_key_checking = False\nretry_files_enabled = False\n"
                     "[inventory]\nunparsed_is_failed = True\n" % (os.path.join(root, "collections"), forks))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(root, "ansible.cfg"), PATH=BIN + os.pathsep + os.environ["PATH"],
               ANSIBLE_LOCALHOST_WARNING="false")
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", os.path.join(root, "edge.fleet.yml"),
            os.path.join(tree, "playbooks", "rollout.yml"),
            "-e", json.dumps({"rollout_release_file": os.path.join(root, "release.yml"),
                              "rollout_check_registries": False,
                              "rollout_record_dir": os.path.join(root, "records"),
                              "rollout_approvals_dir": os.path.join(root, "approvals")})]
    log = os.path.join(root, "run.log")
    proc = subprocess.run([sys.executable, "-c", WRAPPER, log] + argv, cwd=root, env=env, capture_output=True,
                          text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    record = {"devices": {}, "waves": []}
    if os.path.exists(os.path.join(root, "records", "demo-1.1.0.json")):
        with open(os.path.join(root, "records", "demo-1.1.0.json")) as handle:
            record = json.load(handle)
    result["confirmed"] = sum(1 for d in record["devices"].values() if d["outcome"] == "confirmed")
    if result["rc"] != 0 or result["confirmed"] != devices:
        with open(log) as handle:
            sys.exit("%s: the rollout did not complete (rc %s, %d of %d confirmed):\n%s" % (
                label, result["rc"], result["confirmed"], devices, handle.read()[-4000:]))
    result["waves"] = len(set(w["wave"] for w in record["waves"]))
    result["steps"] = len(record["waves"])
    return result


def row(label, devices, result):
    return "%-28s %7d %6d %6d %8.1f %9.1f %10.1f %8.0f" % (
        label, devices, result["waves"], result["steps"], result["wall"], result["cpu"],
        result["cpu"] * 1000.0 / devices, result["rss_mb"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--waves", default='[1, "10%", "50%", "100%"]', help="the fleet file's waves (JSON)")
    parser.add_argument("--compare", metavar="REV", help="also measure the rollout role and playbook of git REV")
    parser.add_argument("--compare-devices", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, records)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="edgeops-rollout-controller-")
    print("%d CPUs, load average %.2f at start; forks %d; STAND-IN device side (see --help)"
          % (os.cpu_count() or 0, os.getloadavg()[0], args.forks))
    print("%-28s %7s %6s %6s %8s %9s %10s %8s" % (
        "run", "devices", "waves", "steps", "wall s", "CPU s", "CPU s/1000", "RSS MB"))
    try:
        if args.compare:
            count = args.compare_devices
            # Waves of at most `forks` devices each (REV may refuse larger ones): a count wave, then equal shares.
            shares = max(2, -(-count * 13 // (10 * args.forks)))
            waves = [1] + ["%d%%" % round(100.0 * (i + 1) / shares) for i in range(shares)]
            for label, revision in (("this checkout", None), ("rev %s" % args.compare[:10], args.compare)):
                result = measure(work, label.replace(" ", "-"), count, waves, args.forks, revision)
                print(row(label, count, result), flush=True)
        for count in args.devices:
            result = measure(work, "n%d" % count, count, json.loads(args.waves), args.forks)
            print(row("this checkout", count, result), flush=True)
    finally:
        if args.keep:
            print("work directory: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
