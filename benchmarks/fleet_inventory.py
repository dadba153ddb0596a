# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory load time: the fleet plugin against a static YAML inventory of the same fleet, side by side.

    python benchmarks/fleet_inventory.py [--devices 1000 10000] [--rounds 3]

Both are loaded by `ansible-inventory --list` (the same process start-up cost); the static inventory has the
same hosts, groups and host variables the plugin builds (waves precomputed), so the ratio is the price of
validating the fleet file, assigning waves and building groups at load time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "collections"))

from ansible_collections.edgeops.fleet.plugins.inventory.fleet import host_entries  # noqa: E402
from ansible_collections.edgeops.fleet.plugins.module_utils._fleet import assign_waves, load_fleet  # noqa: E402


def make_fleet(devices, per_site=12):
    sites = (devices + per_site - 1) // per_site
    site_specs = {}
    for s in range(sites):
        site_specs["site%04d" % s] = {"bastion": {"host": "10.%d.%d.1" % (s // 250, s % 250), "user": "jump"},
                                      "registry": "site%04d-hub:5000" % s}
    fleet = {"profiles": {"nuc-gpu": {"gpus": 1}, "nuc": {"gpus": 0}}, "sites": site_specs,
             "devices": {}, "rollout": {"waves": [1, "10%", "50%", "100%"], "site_cap": "50%"}}
    for n in range(devices):
        s = n // per_site
        fleet["devices"]["site%04d-dev%02d" % (s, n % per_site)] = {
            "site": "site%04d" % s, "address": "10.%d.%d.%d" % (s // 250, s % 250, n % per_site + 10),
            "profile": "nuc-gpu" if n % 3 == 0 else "nuc", "tags": ["line-%d" % (n % 4)]}
    return fleet


def make_static(fleet):
    entries = host_entries(load_fleet(fleet), assign_waves(load_fleet(fleet)))
    groups = {}
    hosts = {}
    for name, (group_list, hostvars) in entries.items():
        hosts[name] = hostvars
        for group in group_list:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = None
    groups["edge_devices"]["hosts"] = dict((name, hosts[name]) for name in groups["edge_devices"]["hosts"])
    return {"all": {"children": groups}}


def timed(argv, env, rounds):
    times = []
    for _round in range(rounds):
        start = time.monotonic()
        subprocess.run(argv, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        times.append(time.monotonic() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tool = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    work = tempfile.mkdtemp(prefix="edgeops-inventory-bench-")
    print("%8s %12s %12s %8s" % ("devices", "fleet (s)", "static (s)", "ratio"))
    for count in args.devices:
        fleet = make_fleet(count)
        with open(os.path.join(work, "fleet.yml"), "w") as handle:
            yaml.safe_dump(fleet, handle)
        with open(os.path.join(work, "edge.fleet.yml"), "w") as handle:
            handle.write("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n")
        with open(os.path.join(work, "static.yml"), "w") as handle:
            yaml.safe_dump(make_static(fleet), handle)
        start = time.monotonic()
        load_fleet(fleet)
        parse_only = time.monotonic() - start
        plugin = timed([tool, "-i", os.path.join(work, "edge.fleet.yml"), "--list"], env, args.rounds)
        static = timed([tool, "-i", os.path.join(work, "static.yml"), "--list"], env, args.rounds)
        print("%8d %12.2f %12.2f %8.2f   (validation alone %.3f s)" % (count, plugin, static, plugin / static, parse_only))


if __name__ == "__main__":
    main()
