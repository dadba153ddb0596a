# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Ansible's inject_facts_as_vars costs the controller, side by side (ansible.cfg sets it to False).

A play that gathers facts on three local hosts (the controller's own facts: a real, full fact set) and then runs
--tasks set_fact tasks on each; `ansible-playbook`'s CPU (its own and its ended children's: the workers) is read
from getrusage, once with facts injected as ansible_* variables and once without, --rounds times in alternation.

Usage (from the repository root, with .venv/bin on PATH):
    python benchmarks/fact_injection.py [--tasks 150] [--rounds 2]
Figures depend on the machine's load: compare the ratio.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import resource
import subprocess
import sys
import tempfile


def write_play(workdir, tasks):
    inventory = os.path.join(workdir, "hosts.ini")
    with open(inventory, "w") as handle:
        for n in range(1, 4):
            handle.write("h%d ansible_connection=local ansible_python_interpreter=%s\n" % (n, sys.executable))
    playbook = os.path.join(workdir, "play.yml")
    with open(playbook, "w") as handle:
        handle.write("- hosts: all\n  gather_facts: true\n  tasks:\n")
        for n in range(tasks):
            handle.write("    - ansible.builtin.set_fact:\n        x%d: \"{{ %d + 1 }}\"\n"
                         "      when: inventory_hostname is defined\n" % (n, n))
    return inventory, playbook


def cpu_of_run(inventory, playbook, inject):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["ansible-playbook", "-i", inventory, playbook], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, ANSIBLE_INJECT_FACT_VARS=str(inject)))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    totals = {True: [0.0, 0.0], False: [0.0, 0.0]}
    with tempfile.TemporaryDirectory() as workdir:
        inventory, playbook = write_play(workdir, args.tasks)
        for _round in range(args.rounds):
            for inject in (True, False):
                user, system = cpu_of_run(inventory, playbook, inject)
                totals[inject][0] += user
                totals[inject][1] += system
    base = sum(totals[True]) or 1e-9
    print("%d set_fact tasks x 3 hosts, %d round(s), CPU-s per round:" % (args.tasks, args.rounds))
    print("%-22s %8s %8s %8s %s" % ("inject_facts_as_vars", "user", "system", "total", "vs True"))
    for inject in (True, False):
        user, system = (value / args.rounds for value in totals[inject])
        print("%-22s %8.2f %8.2f %8.2f %.2f" % (inject, user, system, user + system,
                                                sum(totals[inject]) / base))


if __name__ == "__main__":
    main()
