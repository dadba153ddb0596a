# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate of a staged rollout: the gate's verdict over its probes, and the soak.

The one in-process entry point, for the ``edgeops.fleet.health_check`` module and for controller-side code
(an action plugin importing this file)::

    from ansible_collections.edgeops.fleet.plugins.module_utils._health import gate, HealthError
    result = gate(probes, soak=30, fail_on=["failed"], compose_project="edgeops")

``gate`` validates (HealthError naming the probe and the key, before anything is probed), runs the probes and
then the soak (every probe that passed is sampled again for ``soak`` seconds; one failed sample fails it and
ends the gate) and returns ``verdict``, ``passed``, ``probes``, ``duration``, ``msg`` and ``fail`` (the
verdict is in ``fail_on``). The probes are generations' (``_generations.probe_schema`` and ``.probes``: a
release's health checks and the gate's probes are one schema and one implementation). Pure but for the probe
(clock and sleep injected); standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.edgeops.fleet.plugins.module_utils._generations.metrics import format_value
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.probe_schema import (
    FAILED, INCONCLUSIVE, PASSED, VERDICTS, ProbeError, number, validate_probe, validate_probes)
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.probes import Probe

__all__ = ["FAILED", "INCONCLUSIVE", "PASSED", "VERDICTS", "HealthError", "HealthProbe", "validate_probe",
           "validate_probes", "validate_gate", "run_gate", "gate", "overall_verdict", "summarize"]

# The names the gate has always had: one error class and one probe for both.
HealthError = ProbeError
HealthProbe = Probe
# A probe with a shorter interval would be sampled in a tight loop during the soak.
SOAK_MIN_INTERVAL = 0.5


def gate(probes, soak=0, fail_on=(FAILED, INCONCLUSIVE), compose_project="edgeops", probe=None,
         clock=time.monotonic, sleep=time.sleep):
    """Validate ``probes`` and run the gate with ``soak``: the one in-process entry point (see the docstring
    above). Raises HealthError before anything is probed when a probe, ``soak`` or ``fail_on`` is invalid."""
    probes, soak, fail_on = validate_gate(probes, soak, fail_on)
    result = run_gate(probes, soak, probe or Probe(compose_project=compose_project), clock, sleep)
    result["fail"] = result["verdict"] in fail_on
    return result


def validate_gate(probes, soak=0, fail_on=(FAILED, INCONCLUSIVE)):
    """Validate the whole gate; returns (probes, soak, fail_on) normalised."""
    soak = number(None, "soak", soak, 0, 86400)
    fail_on = list(fail_on or [])
    bad = [v for v in fail_on if v not in (FAILED, INCONCLUSIVE)]
    if bad:
        raise HealthError("fail_on: %r is not a verdict the task can fail on (failed, inconclusive)" % (bad[0],))
    return validate_probes(probes), soak, fail_on


# --------------------------------------------------------------------------------------------
# The gate (pure: probe, clock and sleep are injected)
# --------------------------------------------------------------------------------------------

def overall_verdict(verdicts):
    verdicts = list(verdicts)
    if FAILED in verdicts:
        return FAILED
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return PASSED


def _one_line(text):
    return " ".join(str(text).split())


def summarize(results, verdict, soak):
    """The task's one-line ``msg``."""
    if verdict == PASSED:
        count = len(results)
        return "%d probe%s passed%s" % (count, "" if count == 1 else "s",
                                        " (soak %s s)" % format_value(soak) if soak else "")
    bad = [r for r in results if r["verdict"] == verdict]
    first = bad[0]
    when = " during soak at %s s" % format_value(first["failed_at"]) if first.get("failed_at") is not None else ""
    also = " (also %s: %s)" % (verdict, ", ".join(r["name"] for r in bad[1:])) if len(bad) > 1 else ""
    return _one_line("probe %s %s%s: %s%s" % (first["name"], verdict, when, first["detail"], also))


def _wait_until(deadline, clock, sleep):
    delay = deadline - clock()
    if delay > 0:
        sleep(delay)


def run_gate(probes, soak=0, probe=None, clock=time.monotonic, sleep=time.sleep):
    """Run validated probes and return the gate's result (verdict, passed, probes, duration, msg).

    First pass: every probe is tried until it passes or ``retries`` attempts were made, waiting
    ``interval`` seconds after each attempt that did not pass; the last attempt gives the verdict.
    Probes are interleaved on one schedule, so this takes about as long as the slowest probe.

    Soak (``soak`` > 0 and no probe failed): every probe that passed is sampled again every
    ``interval`` seconds (at least SOAK_MIN_INTERVAL) until ``soak`` seconds after the last first
    pass; probes with the same interval are sampled in the same round. A failed sample fails its
    probe (``failed_at``, seconds from the start) and ends the gate, since the verdict cannot change
    any more; an unreachable sample makes the probe inconclusive and the soak goes on.
    """
    probe = probe or Probe()
    start = clock()

    def elapsed():
        return round(clock() - start, 3)

    states = [{"probe": p, "due": start,
               "result": {"name": p["name"], "type": p["type"], "verdict": None, "attempts": 0, "samples": 0,
                          "detail": "", "passed_at": None, "failed_at": None}} for p in probes]

    pending = list(states)
    while pending:
        _wait_until(min(st["due"] for st in pending), clock, sleep)
        now = clock()
        for st in [st for st in pending if st["due"] <= now]:
            res = st["result"]
            verdict, detail = probe(st["probe"])
            res["attempts"] += 1
            res["detail"] = detail
            if verdict == PASSED:
                res.update(verdict=PASSED, passed_at=elapsed())
            elif res["attempts"] >= st["probe"]["retries"]:
                res["verdict"] = verdict
            else:
                st["due"] = clock() + st["probe"]["interval"]
                continue
            pending.remove(st)

    soaked = soak > 0 and not any(st["result"]["verdict"] == FAILED for st in states)
    if soaked:
        soak_end = clock() + soak
        sampling = [st for st in states if st["result"]["verdict"] == PASSED]
        for st in sampling:
            st["due"] = min(clock() + max(st["probe"]["interval"], SOAK_MIN_INTERVAL), soak_end)
        stop = False
        while sampling and not stop:
            _wait_until(min(st["due"] for st in sampling), clock, sleep)
            now = clock()
            for st in [st for st in sampling if st["due"] <= now]:
                res = st["result"]
                verdict, detail = probe(st["probe"])
                res["samples"] += 1
                if verdict == FAILED:
                    res.update(verdict=FAILED, failed_at=elapsed(), detail=detail)
                    stop = True
                    break
                if verdict == INCONCLUSIVE:
                    res.update(verdict=INCONCLUSIVE, detail="during soak at %s s: %s" % (elapsed(), detail))
                elif res["verdict"] == PASSED:
                    res["detail"] = detail
                if st["due"] >= soak_end:
                    sampling.remove(st)
                else:
                    st["due"] = min(now + max(st["probe"]["interval"], SOAK_MIN_INTERVAL), soak_end)

    results = [st["result"] for st in states]
    verdict = overall_verdict(r["verdict"] for r in results)
    return {
        "verdict": verdict,
        "passed": verdict == PASSED,
        "probes": results,
        "duration": elapsed(),
        "msg": summarize(results, verdict, soak if soaked else 0),
    }
