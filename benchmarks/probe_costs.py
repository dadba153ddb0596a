# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the labs pay in CPU around the clock, per event, side by side with the alternative.

  health probe    one run of a sample image's /usr/local/bin/healthcheck (Docker starts it as a new process in the
                  container on every probe of every container), measured as the container's cgroup CPU time around
                  `docker exec`, minus the container's idle rate; beside it the former probe's code path (the
                  services' HTTP stack: edgeops_service.http_get_json, urllib/http.client/ssl/logging) and a bare
                  `python3 -S -c pass` (the floor of any Python probe)
  registry auth   one bcrypt verification (what the registry pays per authenticated request: htpasswd), in this
                  process's CPU time, at the registry role's default cost 10, the labs' 5 and passlib's default 12

Usage (from the repository root, with .venv/bin on PATH; the sample images built by
playbooks/samples/build_images.yml):
    python benchmarks/probe_costs.py [--probes 20] [--image edgeops/predictor:1.0.0]
Figures depend on the machine's load: run it on a quiet machine, or compare only the ratios.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import subprocess
import sys
import time

# The former health check's code path, as it ran in the image (edgeops_service on PYTHONPATH).
FORMER_PROBE = ("import sys, edgeops_service as s; "
                "status = s.http_get_json('http://127.0.0.1:8080/health', timeout=5.0)[0]; "
                "sys.exit(0 if status == 200 else 1)")
NAME = "edgeops-probe-bench"


def docker(*argv, **kwargs):
    proc = subprocess.run(["docker"] + list(argv), capture_output=True, text=True, check=False)
    if kwargs.get("check", True) and proc.returncode != 0:
        sys.exit("docker %s failed: %s" % (" ".join(argv), proc.stderr.strip()))
    return proc


def cgroup_usage_reader(container_id):
    """A function returning the container's CPU time in seconds (cgroup v1 cpuacct or v2 cpu.stat)."""
    v1 = "/sys/fs/cgroup/cpuacct/docker/%s/cpuacct.usage" % container_id
    if os.path.exists(v1):
        def read_v1(path=v1):
            with open(path) as handle:
                return int(handle.read()) / 1e9
        return read_v1
    for v2 in ("/sys/fs/cgroup/system.slice/docker-%s.scope/cpu.stat" % container_id,
               "/sys/fs/cgroup/docker/%s/cpu.stat" % container_id):
        if os.path.exists(v2):
            def read(path=v2):
                with open(path) as handle:
                    fields = dict(line.split() for line in handle)
                return int(fields["usage_usec"]) / 1e6
            return read
    sys.exit("no cgroup CPU accounting found for container %s" % container_id)


def per_probe(usage, idle_rate, argv, probes):
    """Mean CPU seconds of one `docker exec` of argv in the container, its idle rate taken out; and the last rc."""
    before, began = usage(), time.monotonic()
    rc = None
    for dummy in range(probes):
        rc = docker("exec", NAME, *argv, check=False).returncode
    spent = usage() - before - idle_rate * (time.monotonic() - began)
    return max(spent, 0.0) / probes, rc


def health_probes(image, probes, idle_seconds):
    docker("rm", "-f", NAME, check=False)
    # --no-healthcheck: the image's own HEALTHCHECK (every 5 s) would run probes inside the idle measurement.
    docker("run", "-d", "--name", NAME, "--no-healthcheck", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges", "--user", "10001:10001", image)
    try:
        deadline = time.monotonic() + 60
        while docker("exec", NAME, "/usr/local/bin/healthcheck", check=False).returncode != 0:
            if time.monotonic() > deadline:
                sys.exit("%s never became healthy" % image)
            time.sleep(0.5)
        usage = cgroup_usage_reader(docker("inspect", "-f", "{{.Id}}", NAME).stdout.strip())
        start = usage()
        time.sleep(idle_seconds)
        idle_rate = (usage() - start) / idle_seconds
        rows = []
        for label, argv in (("image's healthcheck", ["/usr/local/bin/healthcheck"]),
                            ("former probe (HTTP stack)", ["python3", "-c", FORMER_PROBE]),
                            ("python3 -S -c pass", ["python3", "-S", "-c", "pass"])):
            cost, rc = per_probe(usage, idle_rate, argv, probes)
            rows.append((label, cost, rc))
        return idle_rate, rows
    finally:
        docker("rm", "-f", NAME, check=False)


def bcrypt_verify(costs, rounds):
    try:
        from passlib.hash import bcrypt  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    rows = []
    for cost in costs:
        digest = bcrypt.using(rounds=cost).hash("bench-password")
        began = time.process_time()
        for dummy in range(rounds):
            bcrypt.verify("bench-password", digest)
        rows.append((cost, (time.process_time() - began) / rounds))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--image", default="edgeops/predictor:1.0.0")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=30.0, help="probe interval for the per-day figure")
    args = parser.parse_args()
    load = os.getloadavg()
    print("load average at start: %.1f %.1f %.1f (%d CPUs)" % (load + (os.cpu_count(),)))

    idle_rate, rows = health_probes(args.image, args.probes, args.idle_seconds)
    ours = rows[0][1]
    print("\nhealth probe of %s (%d probes each; container idle %.4f CPU-s/s, taken out)" % (
        args.image, args.probes, idle_rate))
    print("  %-28s %12s %10s %22s" % ("probe", "CPU-s/probe", "x ours", "CPU-s/day @%ds" % args.interval))
    for label, cost, rc in rows:
        ratio = "%.2f" % (cost / ours) if ours else "-"
        failed = "" if rc == 0 else "  (rc %s)" % rc
        print("  %-28s %12.4f %10s %22.0f%s" % (label, cost, ratio, cost * 86400 / args.interval, failed))

    bcrypt_rows = bcrypt_verify((5, 10, 12), 5)
    if bcrypt_rows is None:
        print("\nregistry auth: passlib not installed (pip install -r requirements.txt)")
        return
    base = bcrypt_rows[0][1]
    print("\nregistry auth: one bcrypt verification (what the registry pays per authenticated request)")
    print("  %-6s %12s %10s" % ("cost", "CPU-s", "x cost 5"))
    for cost, seconds in bcrypt_rows:
        print("  %-6d %12.4f %10.1f" % (cost, seconds, seconds / base if base else 0))


if __name__ == "__main__":
    main()
