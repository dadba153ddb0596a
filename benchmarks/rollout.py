# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark a staged rollout across lab devices against plain Ansible and print figures.

A lab of one site (hub with registry and Alertmanager, N devices) is set up as tests/integration/test_rollout.py
does it, with a fleet file of waves [1, 25%, 100%]. Then, each from every device healthy on a known release:

  ours   playbooks/rollout.yml: stage everywhere, then wave by wave switch, soak under the health gate,
         confirm; a failure rolls back and the failure budget stops the rollout
  plain  benchmarks/plain_rollout.yml: serial [1, 25%, 100%], max_fail_percentage 0,
         community.docker.docker_container, a wait for /predict and a pause of the same soak per batch

on a good release (demo-1.0.0 -> demo-1.1.0) and a bad one (demo-1.1.0 -> demo-1.1.0-bad-500, /predict
answers 500). Reported: wall time of the whole ansible-playbook run, the soak it configured (soak x waves
that got to their soak), the rest as orchestration overhead, and where the devices ended: broken means
/predict does not answer 200, asked from inside the device (docker exec, python3 urllib).

Usage (from the repository root, with .venv/bin on PATH):
    python benchmarks/rollout.py [--devices 20] [--soak 10] [--start-period 60] [--keep-lab]
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
LAB = "edgeops-rbench"
PORT_BASE = 43400
HUB_REGISTRY_PORT = PORT_BASE + 90
HUB_ALERTMANAGER_PORT = PORT_BASE + 91
WAVES = [1, "25%", "100%"]
# The recipe the rollout test uses (one device image for all lab tests and benchmarks).
with open(os.path.join(REPO, "roles", "lab", "vars", "test_image.yml")) as _handle:
    PACKAGES = yaml.safe_load(_handle)["lab_test_image_packages"]
RELEASES = ["demo-1.0.0", "demo-1.1.0", "demo-1.1.0-bad-500"]
GOOD, BAD = "demo-1.1.0", "demo-1.1.0-bad-500"
PREDICT = (
    "import sys, urllib.request\n"
    "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
    "try:\n"
    "    sys.exit(0 if opener.open('http://127.0.0.1:8080/predict?features=2.1,61,10', timeout=5).status == 200 else 1)\n"
    "except Exception:\n"
    "    sys.exit(1)\n")
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


def serial_batches(count):
    """Ansible's batch sizes for serial [1, "25%", "100%"] (a percentage of all hosts, rounded down, at least 1)."""
    sizes, left = [], count
    for size in (1, max(1, int(0.25 * count)), count):
        if left <= 0:
            break
        sizes.append(min(size, left))
        left -= sizes[-1]
    return sizes


class Bench(object):
    def __init__(self, tmp, devices, soak, start_period=None):
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

    # -- running things -------------------------------------------------------------------------------------------

    def ansible(self, label, argv):
        """Run an Ansible tool; returns (rc, output, seconds). The output goes to a log file as well."""
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PATH=BIN + os.pathsep + os.environ["PATH"])
        began = time.monotonic()
        proc = subprocess.run([os.path.join(BIN, argv[0])] + argv[1:], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=3600, check=False)
        seconds = time.monotonic() - began
        self.runs += 1
        out = proc.stdout + proc.stderr
        with open(os.path.join(self.logs, "%02d-%s.log" % (self.runs, label)), "w") as handle:
            handle.write(out)
        return proc.returncode, out, seconds

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
            "rollout_test_release_names": RELEASES,
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
                 "rollout": {"waves": WAVES, "salt": salt, "soak": self.soak, "failure_threshold": 10,
                             "min_executed": 1, "unreachable": "fail",
                             # >= soak + 30 (policy); generous, so a slow switch on a loaded machine never
                             # lets a device revert by itself before the rollout confirms it.
                             "confirm_timeout": self.soak + 120, "environment": "lab"}}
        with open(os.path.join(self.tmp, "fleet.yml"), "w") as handle:
            yaml.safe_dump(fleet, handle)
        with open(self.fleet_config, "w") as handle:
            handle.write("plugin: edgeops.fleet.fleet\nfleet_file: fleet.yml\n")

    def pick_salt(self, devices):
        """A salt whose waves have the sizes of plain's serial batches, so both move the same devices per wave."""
        if os.path.join(REPO, "collections") not in sys.path:
            sys.path.insert(0, os.path.join(REPO, "collections"))
        from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import assign_waves, load_fleet

        def sizes(salt):
            waves = assign_waves(load_fleet({"sites": {"site01": {}}, "devices": devices,
                                             "rollout": {"waves": WAVES, "salt": salt}}))
            return [sum(1 for w in waves.values() if w == n) for n in range(max(waves.values()) + 1)]

        want = serial_batches(len(devices))
        for n in range(2000):
            if sizes("bench-%d" % n) == want:
                return "bench-%d" % n, want
        return "bench-0", sizes("bench-0")

    def up(self):
        self.ansible("lab-down-before", ["ansible-playbook", "playbooks/lab/down.yml"] + self.lab_vars)
        self.must("lab up", self.ansible("lab-up", ["ansible-playbook", "playbooks/lab/up.yml"] + self.lab_vars))
        self.write_vars()
        self.write_fleet()
        self.must("rollout setup", self.playbook("setup", "tests/integration/playbooks/rollout_setup.yml"))
        for release in RELEASES:
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
        rc, out, _seconds = self.ansible("lab-down", ["ansible-playbook", "playbooks/lab/down.yml"] + self.lab_vars)
        left = sh(["docker", "ps", "-a", "--filter", "name=%s" % LAB, "--format", "{{.Names}}"], check=False).stdout.split()
        if rc != 0 or left:
            print("lab teardown: rc %d, containers left: %s\n%s" % (rc, left or "none", out[-2000:] if rc else ""))

    # -- where devices ended ------------------------------------------------------------------------------------

    def predicts(self, device):
        return self.dexec(device, "python3", "-c", PREDICT).returncode == 0

    def generations(self, device):
        out = self.dexec(device, "edgeops-gen", "list")
        return json.loads(out.stdout) if out.returncode == 0 else {"current": None, "generations": []}

    def predictor_image(self, release):
        with open(os.path.join(self.releases, release + ".yml")) as handle:
            manifest = yaml.safe_load(handle)
        return "site01-hub:5000/%s@%s" % (manifest["workloads"]["predictor"]["image"], manifest["workloads"]["predictor"]["digest"])

    def ours_state(self, release):
        def one(device):
            state = self.generations(device)
            by_id = dict((g["id"], g) for g in state["generations"])
            running = by_id[state["current"]]["release"] if state.get("current") in by_id else None
            ever = any(g["release"] == release and g.get("state") != "staged" for g in state["generations"])
            healthy = self.predicts(device)
            return {"on": running == release and state.get("pending") is None and healthy, "ever": ever,
                    "broken": not healthy}
        return self.each_device(one)

    def plain_state(self, release):
        image = self.predictor_image(release)

        def one(device):
            out = self.dexec(device, "docker", "inspect", "-f", "{{.Config.Image}}", "predictor")
            running = out.stdout.strip() == image
            healthy = self.predicts(device)
            # No rollback: what a device runs at the end is all it ever ran of this release.
            return {"on": running and healthy, "ever": running, "broken": not healthy}
        return self.each_device(one)

    # -- the runs ---------------------------------------------------------------------------------------------------

    def ours(self, release, timed=True):
        policy = {"rollout_policy": {"approval_waived": True}}
        argv = ["playbooks/rollout.yml", "-e", "rollout_release_file=%s/%s.yml" % (self.releases, release),
                "-e", json.dumps(policy)]
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
        return {"rc": result[0], "wall": result[2], "soaked": soaked, "status": record["status"],
                "waves": [len(w["devices"]) for w in record["waves"]], "out": result[1]}

    def plain(self, release, timed=True):
        print("  plain: %s%s ..." % (release, "" if timed else " (starting point, not timed)"), flush=True)
        args = ["benchmarks/plain_rollout.yml", "-e", "plain_release_file=%s/%s.yml" % (self.releases, release),
                "-e", "plain_soak=%d" % self.soak]
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
        return {"rc": result[0], "wall": result[2], "soaked": out.count("TASK [Soak (once per batch)]"),
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
    return ("%-6s %-19s %7.1f %9d %10.1f %10.2f %9s %9d %9d %4d" % (
        approach, release, run["wall"], soak_sum, overhead, overhead / devices, "%d/%d" % (broken, devices),
        sum(1 for s in state.values() if s["on"]), sum(1 for s in state.values() if s["ever"]), run["rc"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--soak", type=int, default=10)
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--start-period", type=int, default=60,
                        help="health-check start period (s) of every workload, ours and plain alike; 0: the releases'")
    args = parser.parse_args()
    if not 2 <= args.devices <= 89:
        parser.error("--devices must be between 2 and 89")
    if args.soak < 0:
        parser.error("--soak must be >= 0")
    if sh(["docker", "info"], check=False).returncode != 0:
        sys.exit("the Docker Engine does not answer: start dockerd first (LAB-NOTES)")
    # Terminated from outside: still tear the lab down (the finally below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated (signal %d)" % signum))
    nproc = os.cpu_count()
    load_start = load()
    began = time.monotonic()
    bench = Bench(tempfile.mkdtemp(prefix="edgeops-rbench-"), args.devices, args.soak, args.start_period)
    print("rollout benchmark: lab %s, %d devices, waves %s, soak %d s, health-check start period %s; logs in %s" % (
        LAB, args.devices, json.dumps(WAVES), args.soak,
        "%d s" % args.start_period if args.start_period else "the releases'", bench.logs), flush=True)
    try:
        print("setting up the lab (hub, registry, Alertmanager, %d devices, releases published) ..." % args.devices,
              flush=True)
        bench.up()
        results = []
        print("ours (playbooks/rollout.yml), waves of %s device(s):" % bench.waves, flush=True)
        bench.ours("demo-1.0.0", timed=False)
        good = bench.ours(GOOD)
        results.append(("ours", GOOD, good, bench.ours_state(GOOD)))
        bad = bench.ours(BAD)
        results.append(("ours", BAD, bad, bench.ours_state(BAD)))
        print("plain (benchmarks/plain_rollout.yml), batches of %s device(s):" % serial_batches(args.devices),
              flush=True)
        bench.clean_for_plain()
        bench.plain("demo-1.0.0", timed=False)
        good = bench.plain(GOOD)
        results.append(("plain", GOOD, good, bench.plain_state(GOOD)))
        bad = bench.plain(BAD)
        results.append(("plain", BAD, bad, bench.plain_state(BAD)))
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
    print("Rollout of a container-only release across %d lab devices, waves [1, 25%%, 100%%] "
          "(ours %s, plain %s device(s) per wave), soak %d s" % (
              args.devices, bench.waves, serial_batches(args.devices), args.soak))
    print("Figures from a %d-CPU machine (nproc %d); load average (1, 5, 15 min) at start %s, at end %s" % (
        nproc, nproc, load_start, load()))
    print()
    print("%-6s %-19s %7s %9s %10s %10s %9s %9s %9s %4s" % (
        "", "", "wall", "soak sum", "overhead", "overhead", "broken", "on it", "ever ran", ""))
    print("%-6s %-19s %7s %9s %10s %10s %9s %9s %9s %4s" % (
        "how", "release", "s", "s", "s", "/device s", "/devices", "healthy", "it", "rc"))
    for approach, release, run, state in results:
        print(row(approach, release, run, state, args.devices, args.soak))
    print()
    for release in (GOOD, BAD):
        walls = dict((a, r["wall"]) for a, rel, r, _s in results if rel == release)
        print("wall time ours / plain, %-19s %.2f" % (release + ":", walls["ours"] / walls["plain"]))
    for approach, release, run, _state in results:
        if approach == "ours":
            print("ours %s: %s, waves run %s" % (release, run["status"], run["waves"]))
        else:
            print("plain %s: %d batch(es) started, rc %d" % (release, run["batches"], run["rc"]))
    print()
    print("soak sum: soak x waves (batches) that got to their soak; overhead: wall - soak sum (validation, staging or")
    print("pulls, switches, gates, confirmation, rollback, report). broken: /predict not 200 inside the device at the end.")
    print("Whole benchmark, lab set-up and teardown included: %.0f s" % (time.monotonic() - began))


if __name__ == "__main__":
    main()
