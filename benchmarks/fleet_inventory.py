# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory load time: the fleet plugin against a static YAML inventory of the same fleet, side by side.

    python benchmarks/fleet_inventory.py [--devices 1000 10000] [--rounds 3] [--export] [--no-cli] [--profile]

For each fleet size it writes a fleet file and a static YAML inventory with the same hosts, groups and
variables (group variables on the same groups, waves precomputed), then measures both:

  (a) InventoryManager(loader, sources=[...]) in a fresh Python process (Ansible already imported): the
      parse and group time alone, wall and CPU time (CPU time is less disturbed by a loaded machine);
  (b) `ansible-inventory --list` (or `--list --export` with --export), wall time of the whole command:
      process start-up, parse, and the JSON output of every host's variables.

"fleet" is the plugin reading its file, "cached" the plugin with cache: true (jsonfile, filled by one load first:
the parse and checks skipped), "static" the YAML inventory; ratio = fleet / static. Medians over --rounds. With
--profile, cProfile of (a) for the plugin at the largest size (top functions).
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

from ansible_collections.edgeops.fleet.plugins.inventory.fleet import inventory_layout  # noqa: E402
from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import assign_waves, load_fleet  # noqa: E402

# Run in a child process: times InventoryManager construction only, prints {"wall": s, "cpu": s, "hosts": n}.
_CHILD = """
import json, sys, time
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader()
loader = DataLoader()
profile = sys.argv[2] == "profile"
if profile:
    import cProfile, pstats
    profiler = cProfile.Profile()
    profiler.enable()
wall, cpu = time.perf_counter(), time.process_time()
inventory = InventoryManager(loader, sources=[sys.argv[1]])
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
if profile:
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
print(json.dumps({"wall": wall, "cpu": cpu, "hosts": len(inventory.hosts)}))
"""


def make_fleet(devices, per_site=12):
    sites = (devices + per_site - 1) // per_site
    site_specs = {}
    for s in range(sites):
        site_specs["site%04d" % s] = {"bastion": {"host": "10.%d.%d.1" % (s // 250, s % 250), "user": "jump"},
                                      "registry": "site%04d-hub:5000" % s}
    fleet = {"profiles": {"nuc-gpu": {"gpus": 1}, "nuc": {"gpus": 0}}, "sites": site_specs,
             "devices": {}, "rollout": {"waves": [1, "10%", "50%", "100%"], "site_cap": "50%", "soak": 120}}
    for n in range(devices):
        s = n // per_site
        fleet["devices"]["site%04d-dev%02d" % (s, n % per_site)] = {
            "site": "site%04d" % s, "address": "10.%d.%d.%d" % (s // 250, s % 250, n % per_site + 10),
            "profile": "nuc-gpu" if n % 3 == 0 else "nuc", "tags": ["line-%d" % (n % 4)]}
    return fleet


def make_static(fleet):
    """A YAML inventory with what the plugin builds: the same groups, group variables and host variables."""
    loaded = load_fleet(fleet)
    layout = inventory_layout(loaded, assign_waves(loaded))
    groups = dict((name, {"hosts": {}, "vars": group_vars}) for name, group_vars in layout["groups"].items())
    for name, entry in sorted(layout["hosts"].items()):
        for index, group in enumerate(entry["groups"]):
            groups[group]["hosts"][name] = entry["vars"] if index == 0 else None  # host vars once
    for group in groups.values():
        if not group["vars"]:
            del group["vars"]
    return {"all": {"children": groups}}


def child_env():
    return dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
                PYTHONPATH=COLLECTIONS)


def in_process(source, rounds):
    """Median wall and CPU seconds of InventoryManager construction, each round in a fresh interpreter."""
    walls, cpus = [], []
    for _round in range(rounds):
        proc = subprocess.run([sys.executable, "-c", _CHILD, source, "time"], env=child_env(), cwd=REPO,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit("inventory load failed for %s:\n%s" % (source, proc.stderr[-3000:]))
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        walls.append(result["wall"])
        cpus.append(result["cpu"])
    return statistics.median(walls), statistics.median(cpus)


def profile(source):
    proc = subprocess.run([sys.executable, "-c", _CHILD, source, "profile"], env=child_env(), cwd=REPO,
                          capture_output=True, text=True, check=False)
    return proc.stderr


def cli(tool, source, rounds, export):
    argv = [tool, "-i", source, "--list"] + (["--export"] if export else [])
    times = []
    for _round in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, env=child_env(), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--export", action="store_true", help="ansible-inventory --list --export (what AWX runs)")
    parser.add_argument("--no-cli", action="store_true", help="skip the ansible-inventory measurement (b)")
    parser.add_argument("--profile", action="store_true", help="cProfile the plugin's load at the largest size")
    args = parser.parse_args()
    tool = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    work = tempfile.mkdtemp(prefix="edgeops-inventory-bench-")
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = float("nan")
    print("median of %d rounds; %d CPUs, load average %.2f at start (a loaded machine inflates wall times)"
          % (args.rounds, os.cpu_count() or 0, load))
    header = "%8s | %-30s | %-30s | %s" % (
        "devices", "(a) InventoryManager, wall s", "(a) InventoryManager, CPU s",
        "(b) ansible-inventory --list%s, wall s" % (" --export" if args.export else ""))
    print(header)
    print("%8s | %7s %7s %7s %6s | %7s %7s %7s %6s | %7s %7s %7s %6s" % (
        "", "fleet", "cached", "static", "ratio", "fleet", "cached", "static", "ratio", "fleet", "cached", "static",
        "ratio"))
    try:
        run(args, tool, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, tool, work):
    for count in args.devices:
        directory = os.path.join(work, str(count))
        os.makedirs(directory)
        fleet = make_fleet(count)
        with open(os.path.join(directory, "fleet.yml"), "w") as handle:
            yaml.safe_dump(fleet, handle)
        plugin_source = os.path.join(directory, "edge.fleet.yml")
        with open(plugin_source, "w") as handle:
            handle.write("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n")
        static_source = os.path.join(directory, "static.yml")
        with open(static_source, "w") as handle:
            yaml.safe_dump(make_static(fleet), handle)
        cached_source = os.path.join(directory, "cached.fleet.yml")
        with open(cached_source, "w") as handle:
            handle.write("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\ncache: true\n"
                         "cache_plugin: ansible.builtin.jsonfile\ncache_connection: %s\n"
                         % os.path.join(directory, "cache"))
        in_process(cached_source, 1)  # fills the cache
        plugin_wall, plugin_cpu = in_process(plugin_source, args.rounds)
        cached_wall, cached_cpu = in_process(cached_source, args.rounds)
        static_wall, static_cpu = in_process(static_source, args.rounds)
        row = "%8d | %7.2f %7.2f %7.2f %6.2f | %7.2f %7.2f %7.2f %6.2f" % (
            count, plugin_wall, cached_wall, static_wall, plugin_wall / static_wall,
            plugin_cpu, cached_cpu, static_cpu, plugin_cpu / static_cpu)
        if not args.no_cli:
            plugin_cli = cli(tool, plugin_source, args.rounds, args.export)
            cached_cli = cli(tool, cached_source, args.rounds, args.export)
            static_cli = cli(tool, static_source, args.rounds, args.export)
            row += " | %7.2f %7.2f %7.2f %6.2f" % (plugin_cli, cached_cli, static_cli, plugin_cli / static_cli)
        print(row, flush=True)
    if args.profile:
        print("\ncProfile, InventoryManager construction, fleet plugin, %d devices:" % args.devices[-1])
        print(profile(os.path.join(work, str(args.devices[-1]), "edge.fleet.yml")))


if __name__ == "__main__":
    main()
