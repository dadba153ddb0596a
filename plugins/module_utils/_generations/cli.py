# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device-side program ``edgeops-gen <command>`` (installed by roles/agent as /usr/local/sbin/edgeops-gen).

It runs where no controller is: the dead-man timer (``deadman N``), the boot unit (``boot``) and an operator
on the device. Standard library only, like the whole package.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys

from .config import AGENT_CONFIG, AGENT_VERSION, load_config
from .confirm import DEFAULT_CONFIRM_TIMEOUT
from .errors import GenerationError
from .store import Store

USAGE = """usage: edgeops-gen <command> [args]

commands:
  list                   generations, pointers and recent incidents (JSON)
  verify                 exit 0 if the device runs exactly the current generation
  incidents [AFTER]      incident records after sequence number AFTER (JSON lines)
  switch N [TIMEOUT]     switch to generation N; reverts unless confirmed within TIMEOUT s (default 120)
  health                 run the current generation's health checks (exit 1 if one fails), update the metrics
  metrics                write the metrics file for node exporter's textfile collector and print it
  confirm N              confirm generation N locally (what the controller does remotely)
  rollback [N]           roll back to generation N (default: the previous confirmed one)
  deadman N              run by edgeops-deadman@N.service when the confirm timeout expires
  boot                   run by edgeops-boot.service early at boot
  version                print the agent version

environment:
  EDGEOPS_AGENT_CONFIG   the agent's settings file (default %s)
""" % AGENT_CONFIG


def _out(text):
    sys.stdout.write(text + "\n")


def main(argv=None, config_path=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path = config_path or os.environ.get("EDGEOPS_AGENT_CONFIG") or AGENT_CONFIG
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if not all(arg.isdigit() for arg in args):
        # Generation ids, seconds and sequence numbers only: say how to call it instead of a traceback.
        sys.stderr.write("edgeops-gen: %s: arguments must be whole numbers, got %s\n%s" % (command, " ".join(args), USAGE))
        return 2
    if command == "version":
        _out(AGENT_VERSION)
        return 0
    try:
        store = Store(load_config(config_path), log=lambda msg: sys.stderr.write("edgeops-gen: %s\n" % msg))
        if command == "list":
            result = store.listing(live=True)
        elif command == "verify":
            problems = store.live_problems(store.pointer("current"))
            for problem in problems:
                _out(problem)
            return 1 if problems else 0
        elif command == "incidents":
            for record in store.incidents(int(args[0]) if args else 0):
                _out(json.dumps(record, sort_keys=True))
            return 0
        elif command == "switch" and len(args) in (1, 2):
            result = store.switch(int(args[0]), int(args[1]) if len(args) == 2 else DEFAULT_CONFIRM_TIMEOUT)
        elif command == "health":
            # No lock: it reads, and keeps its result in a file of its own (run by edgeops-health.timer).
            ok, results = store.check_health(store.pointer("current"))
            store.write_metrics()
            _out(json.dumps(results, indent=2, sort_keys=True))
            return 0 if ok else 1
        elif command == "metrics" and not args:
            store.write_metrics()
            sys.stdout.write(store.metrics_text())
            return 0
        elif command == "confirm" and len(args) == 1:
            result = store.confirm(int(args[0]))
        elif command == "rollback" and len(args) <= 1:
            result = store.rollback(int(args[0]) if args else None)
        elif command == "deadman" and len(args) == 1:
            result = store.deadman(int(args[0]))
        elif command == "boot":
            result = store.boot()
        else:
            sys.stderr.write(USAGE)
            return 2
    except GenerationError as exc:
        sys.stderr.write("edgeops-gen: %s\n" % exc.message)
        return 1
    _out(json.dumps(result, indent=2, sort_keys=True))
    return 0
