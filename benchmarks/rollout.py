# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark a staged rollout across lab devices against plain Ansible and print figures.

A lab of one site (hub with registry and Alertmanager, N devices) is set up as tests/integration/test_rollout.py
does it, with a fleet file of waves [1, 10%, 50%, 100%] (--waves). Then, each from every device healthy on a
known release:

  ours   playbooks/rollout.yml: stage everywhere, then wave by wave (in batches of at most forks) switch, soak
         under the health gate, confirm; a failure rolls back and the failure budget stops the rollout
  plain  benchmarks/plain_rollout.yml: serial batches of the same sizes as our waves, max_fail_percentage 0,
         community.docker.docker_container, a wait for the workload's URL and a pause of the same soak per batch

on a good release and a bad one. The workload (--workload):
  light  tests/support/light (busybox httpd, a few MB, no CPU at rest): light-1.0.0 -> light-1.1.0, then
         light-1.1.0-bad (/health answers 404); tens of devices fit a 2-CPU machine
  ai     the AI samples: demo-1.0.0 -> demo-1.1.0, then demo-1.1.0-bad-500 (/predict answers 500); about 20
         devices are the most a 2-CPU machine runs (their start-up alone loads it)
Reported per run: wall time of the whole ansible-playbook run, controller CPU (ansible-playbook, its workers and
the ssh clients they wait for: RUSAGE_CHILDREN of a wrapper), the largest controller process's peak RSS, the soak
it configured (soak x batches that got to their soak), the rest as orchestration overhead, and where the devices
ended: broken means the workload's URL does not answer 200, asked from inside the device (docker exec).

Usage (from the repository root, with .venv/bin on PATH):
    python benchmarks/rollout.py [--devices 50] [--workload light] [--waves 1,10%,50%,100%] [--soak 10]
                                 [--forks 20] [--start-period S] [--keep-lab]
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import yaml

# The wrapper that measures one Ansible run (its CPU, the largest peak RSS), shared with the controller benchmark.
from rollout_controller import WRAPPER  # benchmarks/ is on sys.path when run as a script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
LAB = "edgeops-rbench"
PORT_BASE = 43400
HUB_REGISTRY_PORT = PORT_BASE + 90
HUB_ALERTMANAGER_PORT = PORT_BASE + 91
# The recipe the rollout test uses (one device image for all lab tests and benchmarks).
with open(os.path.join(REPO, "roles", "lab", "vars", "test_image.yml")) as _handle:
    PACKAGES = yaml.safe_load(_handle)["lab_test_image_packages"]
# Per workload: the releases (start, good, bad), the workload whose image tells plain's release, and how a device
# is asked whether it serves (from inside the device).
WORKLOADS = {
    "light": {"releases": ["light-1.0.0", "light-1.1.0", "light-1.1.0-bad"], "main": "web",
              "url": "http://127.0.0.1:8080/health",
              "ask": ["busybox", "wget", "-q", "-O", "/dev/null", "-T", "5", "http://127.0.0.1:8080/health"]},
    "ai": {"releases": ["demo-1.0.0", "demo-1.1.0", "demo-1.1.0-bad-500"], "main": "predictor",
           "url": "http://127.0.0.1:8080/predict?features=2.1,61,10",
           "ask": ["python3", "-c",
                   "import sys, urllib.request\n"
                   "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
                   "try:\n"
                   "    sys.exit(0 if opener.open('http://127.0.0.1:8080/predict?features=2.1,61,10', timeout=5)"
                   ".status == 200 else 1)\n"
                   "except Exception:\n"
                   "    sys.exit(1)\n"]},
}
# Plain's clean slate: nothing of the generations left running, no image left (so both pull the same).
CLEAN = ("docker compose -p edgeops down --remove-orphans --timeout 5 >/dev/null 2>&1; "
         "ids=$(docker ps -aq); [ -z \"$ids\" ] || docker rm -f $ids >/dev/null; "
         "docker image prune -af >/dev/null; docker ps -aq | wc -l")


def sh(argv, check=True, timeout=600, **kwargs):
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        sys.exit("failed: %s\n%s%s" % (" ".join(argv), proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def parse_waves(text):
    waves = []
    for item in text.split(","):
        item = item.strip()
        waves.append(item if item.endswith("%") else int(item))
    return waves


class Bench(object):
    def __init__(self, tmp, devices, soak, workload, waves, forks, start_period=None):
        self.workload = WORKLOADS[workload]
        self.workload_name = workload
        self.releases_run = self.workload["releases"]
        self.wave_plan = waves
        self.forks = forks
        self.start_period = start_period
        self.tmp = tmp
        self.count = devices
        self.soak = soak
        self.devices = ["site01-dev%02d" % n for n in range(1, devices + 1)]
        self.inventory = os.path.join(tmp, "hosts.yml")
        self.releases = os.path.join(tmp, "releases")
        self.records = os.path.join(tmp, "rollouts")
        self.fleet_config = os.path.join(tmp, "edge.fleet.yml")
        self.vars_file = os.path.join(tmp, "vars.yml")
        self.logs = os.path.join(tmp, "logs")
        os.makedirs(self.logs)
        self.lab_vars = ["-e", "lab_name=" + LAB, "-e", "lab_ssh_port_base=%d" % PORT_BASE,
                         "-e", "lab_inventory_file=" + self.inventory, "-e", "lab_devices_per_site=%d" % devices,
                         "-e", json.dumps({"lab_image_packages": PACKAGES})]
        self.runs = 0
        self.waves = []

    # -- running things -------------------------------------------------------------------------------------------

    def ansible(self, label, argv):
        """Run an Ansible tool; returns (rc, output, seconds, usage). The output goes to a log file as well."""
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PATH=BIN + os.pathsep + os.environ["PATH"])
        self.runs += 1
        log = os.path.join(self.logs, "%02d-%s.log" % (self.runs, label))
        proc = subprocess.run([sys.executable, "-c", WRAPPER, log, os.path.join(BIN, argv[0])] + argv[1:], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=3600, check=True)
        usage = json.loads(proc.stdout.strip().splitlines()[-1])
        with open(log) as handle:
            out = handle.read()
        return usage["rc"], out, usage["wall"], usage

    def playbook(self, label, playbook, *args):
        return self.ansible(label, ["ansible-playbook", "-i", self.inventory, "-i", self.fleet_config,
                                    "-e", "@" + self.vars_file, playbook] + list(args))

    def must(self, what, result):
        if result[0] != 0:
            raise SystemExit("%s failed (rc %d):\n%s" % (what, result[0], result[1][-5000:]))
        return result

    def untimed_retry(self, what, result, again):
        """The starting point of a measurement must be reached; a loaded machine can fail it once (slow health checks)."""
        if result[0] != 0:
            errors = [line for line in result[1].splitlines() if line.startswith("[ERROR]")] or ["(no [ERROR] line)"]
            print("    %s failed (rc %d), running it again: %s" % (what, result[0], errors[-1][:300]), flush=True)
            self.must(what, again())

    def dexec(self, device, *argv):
        return sh(["docker", "exec", "%s-%s" % (LAB, device)] + list(argv), check=False, timeout=120)

    def each_device(self, func):
        with ThreadPoolExecutor(max_workers=8) as pool:
            return dict(zip(self.devices, pool.map(func, self.devices)))

    # -- the lab ----------------------------------------------------------------------------------------------------

    def write_vars(self):
        pull, push, token = secrets.token_urlsafe(12), secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        data = {
            "edgeops_site": "site01",
            "registry_pki_dir": os.path.join(self.tmp, "pki", "site01"),
            "registry_address": "site01-hub:5000",
            "registry_users": [{"name": "publisher", "password": push}, {"name": "puller", "password": pull}],
            "registry_bcrypt_cost": 5,
            "registry_pull_user": "puller", "registry_pull_password": pull,
            "registry_push_user": "publisher", "registry_push_password": push,
            "registry_push_address": "127.0.0.1:%d" % HUB_REGISTRY_PORT,
            "workloads_secrets": {"dashboard_token": token},
            "docker_engine_default_ulimits": {"nofile": {"soft": 16384, "hard": 20000}},
            "rollout_test_releases": self.releases,
            "rollout_test_release_names": self.releases_run,
            "rollout_test_light_images": self.workload_name == "light",
            "rollout_record_dir": self.records,
            "rollout_approvals_dir": os.path.join(self.tmp, "approvals"),
            "rollout_registry_access": {"site01-hub:5000": "127.0.0.1:%d" % HUB_REGISTRY_PORT},
            "rollout_alertmanager_url": "http://127.0.0.1:%d" % HUB_ALERTMANAGER_PORT,
            "rollout_controller_probes": [{"name": "ssh-port", "type": "tcp", "host": "{{ ansible_host }}",
                                           "port": "{{ ansible_port }}", "retries": 3, "interval": 1}],
        }
        with open(self.vars_file, "w") as handle:
            yaml.safe_dump(data, handle)

    def write_fleet(self):
        devices = {}
        for index, name in enumerate(self.devices):
            devices[name] = {"site": "site01", "address": "127.0.0.1", "port": PORT_BASE + index + 1,
                             "tags": ["line-a"] + (["canary"] if index == 0 else [])}
        salt, self.waves = self.pick_salt(devices)
        fleet = {"version": 1,
                 "sites": {"site01": {"registry": "site01-hub:5000"}},
                 "devices": devices,
                 "rollout": {"waves": self.wave_plan, "salt": salt, "soak": self.soak, "failure_threshold": 10,
                             "min_executed": 1, "unreachable": "fail",
                             # >= soak + 30 (policy); generous, so a slow switch on a loaded machine never
                             # lets a device revert by itself before the rollout confirms it.
                             "confirm_timeout": self.soak + 120, "environment": "lab"}}
        with open(os.path.join(self.tmp, "fleet.yml"), "w") as handle:
            yaml.safe_dump(fleet, handle)
        with open(self.fleet_config, "w") as handle:
            handle.write("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n")

    def pick_salt(self, devices):
        """The salt and the sizes of its waves: plain's serial batches get the same sizes (the fleet file's shares
        are cumulative, Ansible's serial percentages are not, so the sizes go to plain as counts)."""
        if os.path.join(REPO, "collections") not in sys.path:
            sys.path.insert(0, os.path.join(REPO, "collections"))
        from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import assign_waves, load_fleet

        waves = assign_waves(load_fleet({"sites": {"site01": {}}, "devices": devices,
                                         "rollout": {"waves": self.wave_plan, "salt": "bench"}}))
        return "bench", [sum(1 for w in waves.values() if w == n) for n in range(max(waves.values()) + 1)]

    def up(self):
        self.ansible("lab-down-before", ["ansible-playbook", "playbooks/lab/down.yml"] + self.lab_vars)
        self.must("lab up", self.ansible("lab-up", ["ansible-playbook", "playbooks/lab/up.yml"] + self.lab_vars))
        self.write_vars()
        self.write_fleet()
        self.must("rollout setup", self.playbook("setup", "tests/integration/playbooks/rollout_setup.yml"))
        for release in self.releases_run:
            self.must("publish " + release, self.playbook(
                "publish-" + release, "playbooks/registry/publish.yml",
                "-e", "release_manifest=" + os.path.join(self.releases, release + ".yml")))
        if self.start_period:
            self.set_start_period()

    def set_start_period(self):
        """Give every health-checked workload of every release the same start period (ours and plain alike).

        The lab's devices share the machine's CPUs: a wave of 14 devices starting their containers at once on
        2 CPUs (load ~80) fails the samples' 5 s start period on most of them, which measures the machine,
        not the rollout. Real devices have CPUs of their own.
        """
        for name in os.listdir(self.releases):
            path = os.path.join(self.releases, name)
            with open(path) as handle:
                manifest = yaml.safe_load(handle)
            for workload in (manifest.get("workloads") or {}).values():
                if isinstance(workload.get("healthcheck"), dict):
                    workload["healthcheck"]["start_period"] = "%ds" % self.start_period
            with open(path, "w") as handle:
                yaml.safe_dump(manifest, handle, sort_keys=False)

    def down(self):
        rc, out, _seconds, _usage = self.ansible("lab-down", ["ansible-playbook", "playbooks/lab/down.yml"] + self.lab_vars)
        left = sh(["docker", "ps", "-a", "--filter", "name=%s" % LAB, "--format", "{{.Names}}"], check=False).stdout.split()
        if rc != 0 or left:
            print("lab teardown: rc %d, containers left: %s\n%s" % (rc, left or "none", out[-2000:] if rc else ""))

    # -- where devices ended ------------------------------------------------------------------------------------

    def serves(self, device):
        return self.dexec(device, *self.workload["ask"]).returncode == 0

    def generations(self, device):
        out = self.dexec(device, "edgeops-gen", "list")
        return json.loads(out.stdout) if out.returncode == 0 else {"current": None, "generations": []}

    def main_image(self, release):
        with open(os.path.join(self.releases, release + ".yml")) as handle:
            workload = yaml.safe_load(handle)["workloads"][self.workload["main"]]
        return "site01-hub:5000/%s@%s" % (workload["image"], workload["digest"])

    def ours_state(self, release):
        def one(device):
            state = self.generations(device)
            by_id = dict((g["id"], g) for g in state["generations"])
            running = by_id[state["current"]]["release"] if state.get("current") in by_id else None
            ever = any(g["release"] == release and g.get("state") != "staged" for g in state["generations"])
            healthy = self.serves(device)
            return {"on": running == release and state.get("pending") is None and healthy, "ever": ever,
                    "broken": not healthy}
        return self.each_device(one)

    def plain_state(self, release):
        image = self.main_image(release)

        def one(device):
            out = self.dexec(device, "docker", "inspect", "-f", "{{.Config.Image}}", self.workload["main"])
            running = out.stdout.strip() == image
            healthy = self.serves(device)
            # No rollback: what a device runs at the end is all it ever ran of this release.
            return {"on": running and healthy, "ever": running, "broken": not healthy}
        return self.each_device(one)

    # -- the runs ---------------------------------------------------------------------------------------------------

    def ours(self, release, timed=True):
        policy = {"rollout_policy": {"approval_waived": True}}
        argv = ["playbooks/rollout.yml", "-e", "rollout_release_file=%s/%s.yml" % (self.releases, release),
                "-e", json.dumps(policy), "-f", str(self.forks)]
        print("  ours: %s%s ..." % (release, "" if timed else " (starting point, not timed)"), flush=True)
        result = self.playbook("ours-" + release, *argv)
        if not timed:
            # An aborted rollout is resumed (confirmed devices stay, the others are switched again).
            self.untimed_retry("rollout of %s" % release, result,
                               lambda: self.playbook("ours-%s-resume" % release, *(argv + ["-e", "rollout_action=resume"])))
            return None
        with open(os.path.join(self.records, release + ".json")) as handle:
            record = json.load(handle)
        soaked = sum(1 for w in record["waves"] if w["counts"].get("confirmed"))
        return {"rc": result[0], "wall": result[2], "cpu": result[3]["cpu"], "rss_mb": result[3]["rss_mb"],
                "soaked": soaked, "status": record["status"], "out": result[1],
                "waves": [len(w["devices"]) for w in record["waves"]]}

    def plain(self, release, timed=True):
        print("  plain: %s%s ..." % (release, "" if timed else " (starting point, not timed)"), flush=True)
        args = ["benchmarks/plain_rollout.yml", "-e", "plain_release_file=%s/%s.yml" % (self.releases, release),
                "-e", "plain_soak=%d" % self.soak, "-f", str(self.forks),
                "-e", json.dumps({"plain_serial": [n for n in self.waves if n],  # (serial 0 would mean all)
                                  "plain_workload": self.workload_name,
                                  "plain_url": self.workload["url"]})]
        if self.start_period:
            args += ["-e", "plain_start_period=%ds" % self.start_period]
        if timed:
            args += ["--skip-tags", "plain_setup"]  # one-time device preparation, done in the untimed first run
        result = self.playbook("plain-" + release, *args)
        if not timed:
            self.untimed_retry("plain deployment of %s" % release, result,
                               lambda: self.playbook("plain-%s-again" % release, *args))
            return None
        out = result[1]
        return {"rc": result[0], "wall": result[2], "cpu": result[3]["cpu"], "rss_mb": result[3]["rss_mb"],
                "soaked": out.count("TASK [Soak (once per batch)]"),
                "batches": out.count("PLAY [Plain | deploy the release in batches"), "out": out}

    def clean_for_plain(self):
        left = self.each_device(lambda device: self.dexec(device, "sh", "-c", CLEAN).stdout.strip())
        busy = [d for d, n in left.items() if n != "0"]
        if busy:
            raise SystemExit("containers left on %s after the clean-up" % ", ".join(busy))


def row(approach, release, run, state, devices, soak):
    soak_sum = run["soaked"] * soak
    overhead = run["wall"] - soak_sum
    broken = sum(1 for s in state.values() if s["broken"])
    return ("%-6s %-19s %7.1f %8.1f %7.0f %8d %9.1f %9.2f %9s %8d %8d %3d" % (
        approach, release, run["wall"], run["cpu"], run["rss_mb"], soak_sum, overhead, overhead / devices,
        "%d/%d" % (broken, devices), sum(1 for s in state.values() if s["on"]),
        sum(1 for s in state.values() if s["ever"]), run["rc"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="light")
    parser.add_argument("--waves", type=parse_waves, default=parse_waves("1,10%,50%,100%"),
                        help="the fleet file's waves, comma-separated (counts and cumulative shares)")
    parser.add_argument("--soak", type=int, default=10)
    parser.add_argument("--forks", type=int, default=20, help="forks of both runs (ours cuts larger waves in batches)")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--start-period", type=int, default=None,
                        help="health-check start period (s) of every workload, ours and plain alike; 0: the "
                             "releases' (default: 60 for ai, the releases' for light)")
    args = parser.parse_args()
    if not 2 <= args.devices <= 89:
        parser.error("--devices must be between 2 and 89")
    if args.soak < 0:
        parser.error("--soak must be >= 0")
    if args.forks < 1:
        parser.error("--forks must be >= 1")
    if args.start_period is None:
        args.start_period = 60 if args.workload == "ai" else 0
    if sh(["docker", "info"], check=False).returncode != 0:
        sys.exit("the Docker Engine does not answer: start dockerd first (LAB-NOTES)")
    # Terminated from outside: still tear the lab down (the finally below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated (signal %d)" % signum))
    nproc = os.cpu_count()
    load_start = load()
    began = time.monotonic()
    bench = Bench(tempfile.mkdtemp(prefix="edgeops-rbench-"), args.devices, args.soak, args.workload, args.waves,
                  args.forks, args.start_period)
    start, good_release, bad_release = bench.releases_run
    print("rollout benchmark: lab %s, %d devices, %s workload, waves %s, soak %d s, forks %d, health-check start "
          "period %s; logs in %s" % (
              LAB, args.devices, args.workload, json.dumps(args.waves), args.soak, args.forks,
              "%d s" % args.start_period if args.start_period else "the releases'", bench.logs), flush=True)
    try:
        print("setting up the lab (hub, registry, Alertmanager, %d devices, releases published) ..." % args.devices,
              flush=True)
        bench.up()
        results = []
        print("ours (playbooks/rollout.yml), waves of %s device(s):" % bench.waves, flush=True)
        bench.ours(start, timed=False)
        good = bench.ours(good_release)
        results.append(("ours", good_release, good, bench.ours_state(good_release)))
        bad = bench.ours(bad_release)
        results.append(("ours", bad_release, bad, bench.ours_state(bad_release)))
        print("plain (benchmarks/plain_rollout.yml), serial batches of %s device(s):" % bench.waves, flush=True)
        bench.clean_for_plain()
        bench.plain(start, timed=False)
        good = bench.plain(good_release)
        results.append(("plain", good_release, good, bench.plain_state(good_release)))
        bad = bench.plain(bad_release)
        results.append(("plain", bad_release, bad, bench.plain_state(bad_release)))
    finally:
        if not args.keep_lab:
            print("tearing the lab down ...", flush=True)
            bench.down()
            for name in os.listdir(bench.tmp):  # keep the logs only (the vars file holds the lab's passwords)
                if name != "logs":
                    path = os.path.join(bench.tmp, name)
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    else:
                        os.remove(path)
    print()
    print("Rollout of a container-only release (%s workload) across %d lab devices, waves %s (%s device(s) per wave, "
          "plain's serial the same), soak %d s, forks %d" % (
              args.workload, args.devices, json.dumps(args.waves), bench.waves, args.soak, args.forks))
    print("Figures from a %d-CPU machine (nproc %d); load average (1, 5, 15 min) at start %s, at end %s" % (
        nproc, nproc, load_start, load()))
    print()
    print("%-6s %-19s %7s %8s %7s %8s %9s %9s %9s %8s %8s %3s" % (
        "", "", "wall", "ctl CPU", "ctl RSS", "soak sum", "overhead", "overhead", "broken", "on it", "ever ran", ""))
    print("%-6s %-19s %7s %8s %7s %8s %9s %9s %9s %8s %8s %3s" % (
        "how", "release", "s", "s", "MB", "s", "s", "/device s", "/devices", "healthy", "it", "rc"))
    for approach, release, run, state in results:
        print(row(approach, release, run, state, args.devices, args.soak))
    print()
    for release in (good_release, bad_release):
        runs = dict((a, r) for a, rel, r, _s in results if rel == release)
        print("ours / plain, %-19s wall %.2f, controller CPU %.2f" % (
            release + ":", runs["ours"]["wall"] / runs["plain"]["wall"], runs["ours"]["cpu"] / runs["plain"]["cpu"]))
    for approach, release, run, _state in results:
        if approach == "ours":
            print("ours %s: %s, batches run %s" % (release, run["status"], run["waves"]))
        else:
            print("plain %s: %d batch(es) started, rc %d" % (release, run["batches"], run["rc"]))
    print()
    print("soak sum: soak x batches that got to their soak; overhead: wall - soak sum (validation, staging or pulls,")
    print("switches, gates, confirmation, rollback, report). ctl CPU: ansible-playbook, its workers and the ssh clients")
    print("they waited for; ctl RSS: the largest of those processes. broken: %s not 200 inside the device at the end."
          % bench.workload["url"])
    print("Whole benchmark, lab set-up and teardown included: %.0f s" % (time.monotonic() - began))


if __name__ == "__main__":
    main()
