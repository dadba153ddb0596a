# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device generations: the one piece of code that stages, switches, confirms and rolls back.

The same package runs in two places and must therefore use the Python standard library only, and import
its own modules relatively (``from .store import Store``):

* inside the ``edgeops.fleet.generation*``, ``health_check`` and ``nftables`` modules (AnsiballZ packs the
  modules a module imports, relative imports included);
* on the device as ``/usr/local/lib/edgeops/edgeops_generations/``, the package behind ``edgeops-gen``
  (``cli.main``), installed whole by the ``edgeops.fleet.agent`` role; the dead-man timer and the boot
  recovery unit run it when no controller is there.

Modules, by concern, each importing only modules listed before it: errors, sysio (processes, atomic writes,
locks), config (the agent's version, paths, settings), nft (our table, nft transactions), confirm
(commit-confirmed: minimum timeout, revert timers, pending record), probe_schema, metrics and probes (the one
probe schema and implementation), textfile (the device's metrics for node exporter), release (shape, artifacts,
manifest), plans (pure decisions), state (the state directory), stage, activate, store (switch, confirm, rollback, dead-man, boot, gc) and cli (edgeops-gen).

Layout of the state directory (``/var/lib/edgeops`` by default)::

    generations/<N>/manifest.json     immutable once renamed into place
    generations/<N>/compose.yaml      (optional) containers
    generations/<N>/nftables.nft      (optional) our own ``inet edgeops`` table
    generations/<N>/vms/<name>.xml    (optional) libvirt domains
    generations/<N>/files/<i>         (optional) config files, destinations in the manifest
    generations/<N>/health.json       local health checks
    current   -> generations/<N>      what should run (absent: nothing)
    confirmed -> generations/<M>      last generation the controller confirmed (absent: nothing)
    state.json                        per-generation states, history, boot failure counts
    incidents.jsonl                   append-only incident log
    health-last.json                  the last health run (for the metrics)
    lock                              flock: one operation at a time

``current`` and ``confirmed`` are symlinks swapped by rename(2), so a power loss leaves each one
either old or new. ``current != confirmed`` means a switch is not confirmed yet: the dead-man
timer, or the boot unit after a power loss, brings the device back to ``confirmed``.
"""
