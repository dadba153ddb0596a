# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What one read of the rollout's record costs, by how it is read: why the devices read a per-batch copy.

    python benchmarks/record_templating.py [--devices 1000 5000]

A synthetic record shaped like the rollout's (plan.devices, schedule.hosts) is read with Ansible's own template
engine two ways: templated whole, which is what HostVarsVars does for hostvars['localhost'].__rollout on every
access, and one key of it as a variable of the task (the per-batch copy, roles/rollout/tasks/record_here.yml).
"""

from __future__ import absolute_import, division, print_function

import argparse
import time

from ansible._internal._datatag._tags import TrustedAsTemplate
from ansible._internal._templating._engine import TemplateEngine
from ansible.plugins.loader import init_plugin_loader


def record(devices):
    names = ["site%04d-dev%02d" % (n // 12, n % 12) for n in range(devices)]
    return {"decision": "continue", "schedule": {"hosts": names},
            "plan": {"devices": dict((n, {"site": n[:8], "wave": 3, "pinned": False, "registry": n[:8] + "-hub:5000"})
                                     for n in names)}}


def per_call_ms(call, rounds):
    start = time.perf_counter()
    for _round in range(rounds):
        call()
    return (time.perf_counter() - start) / rounds * 1000.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    init_plugin_loader()
    print("%8s %22s %22s %7s" % ("devices", "whole record, ms", "one key of a var, ms", "ratio"))
    for devices in args.devices:
        data = record(devices)
        engine = TemplateEngine(variables={"__rollout_here": data})
        expression = TrustedAsTemplate().tag("{{ __rollout_here.decision }}")
        whole = per_call_ms(lambda: engine.template(data), args.rounds)
        one = per_call_ms(lambda: engine.template(expression), args.rounds * 10)
        print("%8d %22.2f %22.3f %7.0f" % (devices, whole, one, whole / one))


if __name__ == "__main__":
    main()
