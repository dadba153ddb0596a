# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What `ansible-playbook` costs while it only waits, by Ansible's internal_poll_interval, side by side.

For each interval: a playbook whose one task is a 10 s command on localhost; the main process's CPU (utime + stime
from /proc) is sampled over 5 s of that wait and printed per 5 s waited, with the ratio to Ansible's default (1 ms).
The repository's ansible.cfg sets 0.02 (a soak, a switch or a wait_for keeps every ansible-playbook waiting).

Usage (from the repository root, with .venv/bin on PATH):
    python benchmarks/poll_interval.py [--intervals 0.001 0.01 0.02 0.05]
Figures depend on the machine's load: compare the ratios.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import subprocess
import tempfile
import time

PLAYBOOK = """- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.command: sleep 10
      changed_when: false
"""


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def waiting_cost(interval, workdir):
    config = os.path.join(workdir, "poll.cfg")
    with open(config, "w") as handle:
        handle.write("[defaults]\ninternal_poll_interval = %s\n" % interval)
    playbook = os.path.join(workdir, "wait.yml")
    with open(playbook, "w") as handle:
        handle.write(PLAYBOOK)
    # The implicit localhost: the controller's own Python, no inventory needed.
    proc = subprocess.Popen(["ansible-playbook", playbook],
                            env=dict(os.environ, ANSIBLE_CONFIG=config), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # start-up done, the task is running
        before = cpu_seconds(proc.pid)
        time.sleep(5)
        cost = cpu_seconds(proc.pid) - before
        if proc.poll() is not None:
            raise SystemExit("ansible-playbook ended before the 5 s were measured (exit %d)" % proc.returncode)
        return cost
    finally:
        if proc.wait(timeout=60) != 0:
            raise SystemExit("ansible-playbook failed (exit %d): run the playbook by hand to see why" % proc.returncode)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", nargs="+", type=float, default=[0.001, 0.01, 0.02, 0.05])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        costs = [(interval, waiting_cost(interval, workdir)) for interval in args.intervals]
    base = costs[0][1] or 1e-9
    print("%-22s %-26s %s" % ("internal_poll_interval", "CPU s per 5 s waited", "vs %g s" % costs[0][0]))
    for interval, cost in costs:
        print("%-22g %-26.3f %.2f" % (interval, cost, cost / base))


if __name__ == "__main__":
    main()
