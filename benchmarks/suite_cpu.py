# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the suite's CPU goes: the lab devices' side (per lab), the workloads nested in them, and the rest (the
controller: ansible-playbook, molecule, pytest, linters; and the host's Docker Engine), sampled while it runs.

The suite is CPU-bound on 2 CPUs (three lab streams side by side): every entry's wall time grows with what the
others burn, so a cut is worth what it saves in CPU-seconds, wherever it is. Run it beside the suite:

    python3 benchmarks/suite_cpu.py --out /tmp/cpu.tsv &   # samples every 5 s until stopped (SIGTERM/SIGINT)
    bash scripts/test.sh; kill %1
    python3 benchmarks/suite_cpu.py --report /tmp/cpu.tsv

Sources (cgroup v1, as on this machine): /proc/stat for the host's busy time, cpuacct.usage of each container's
cgroup under /sys/fs/cgroup/cpuacct/docker (cumulative, so processes that ended between samples still count). A
lab container is named <lab>-<site>-<host>; a cgroup the host's Docker Engine does not know is a container nested
in a lab device (its dockerd shares the host's cgroup tree). What is not in a container is "outside containers".
Time ends on the last sample: up to 5 s of a container removed between samples is lost.
"""

from __future__ import absolute_import, division, print_function

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import time

CGROUP = "/sys/fs/cgroup/cpuacct/docker"
TICK = os.sysconf("SC_CLK_TCK")
LAB_HOST = re.compile(r"^(?P<lab>.+)-site\d+-(hub|dev\d+|bastion)$")


def host_busy_seconds():
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def container_usage():
    usage = {}
    try:
        names = os.listdir(CGROUP)
    except OSError:
        return usage
    for name in names:
        try:
            with open(os.path.join(CGROUP, name, "cpuacct.usage")) as handle:
                usage[name] = int(handle.read()) / 1e9
        except (OSError, ValueError):
            continue
    return usage


def container_names():
    out = subprocess.run(["docker", "ps", "--all", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
                         capture_output=True, text=True, check=False).stdout
    return dict(line.split(None, 1) for line in out.splitlines() if " " in line)


def sample(out_path, interval):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    known = {}
    with open(out_path, "w") as out:
        out.write("# time\tkind\tname\tcpu_seconds\n")
        while not stop:
            now = time.monotonic()
            known.update(container_names())
            out.write("%.1f\thost\tbusy\t%.2f\n" % (now, host_busy_seconds()))
            for cid, seconds in container_usage().items():
                out.write("%.1f\tcgroup\t%s\t%.2f\n" % (now, known.get(cid, "nested:" + cid[:12]), seconds))
            out.flush()
            deadline = now + interval
            while not stop and time.monotonic() < deadline:
                time.sleep(0.2)


def group_of(name):
    if name.startswith("nested:"):
        return "containers nested in lab devices (workloads, registry, ...)"
    match = LAB_HOST.match(name)
    return "lab %s" % match.group("lab") if match else "container %s" % name


def report(path):
    # A container's counter restarts at 0 when it restarts (a power-loss trial kills and starts it: a new cgroup), so
    # the usage is the sum of the increases between samples, and a value below the one before counts whole.
    last, used = {}, collections.Counter()
    times = []
    with open(path) as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            stamp, kind, name, seconds = line.rstrip("\n").split("\t")
            key, value = (kind, name), float(seconds)
            if key in last:
                used[key] += value - last[key] if value >= last[key] else value
            last[key] = value
            times.append(float(stamp))
    if not times:
        sys.exit("%s: no samples" % path)
    wall = max(times) - min(times)
    busy = used[("host", "busy")]
    groups = collections.Counter()
    for key in last:
        if key[0] == "cgroup":
            groups[group_of(key[1])] += used[key]
    inside = sum(groups.values())
    print("%d s sampled; host busy %.0f CPU-s (%.0f%% of %d CPUs)" % (wall, busy, 100 * busy / max(wall, 1) /
                                                                      os.cpu_count(), os.cpu_count()))
    print("%10s  %5s  %s" % ("CPU-s", "share", "where"))
    rows = list(groups.items()) + [("outside containers (controller: ansible, pytest, molecule, linters; "
                                    "the host's dockerd)", busy - inside)]
    for where, seconds in sorted(rows, key=lambda r: -r[1]):
        if seconds >= 1:
            print("%10.0f  %4.0f%%  %s" % (seconds, 100 * seconds / max(busy, 1), where))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--out", help="sample into this file until stopped")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--report", help="summarise a sample file")
    args = parser.parse_args()
    if args.out:
        sample(args.out, args.interval)
    if args.report:
        report(args.report)
    if not (args.out or args.report):
        parser.error("give --out or --report")


if __name__ == "__main__":
    main()
