# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one gated switch, as a sequence of steps the controller drives (action plugin edgeops.fleet.gated_switch).

Every change that reaches a device (a workloads deploy, a rollout wave, a secret rotation, VMs) goes through
the same steps, so that they cannot drift apart:

    switch -> the device's gate (soak) -> the controller's gate -> confirm over a new connection

and, on any failure after the device switched, a rollback to the generation it ran before. The steps
themselves are callables (``ops``) so that this order and the result it returns are tested without a device;
the action plugin gives them module runs on the device.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible.errors import AnsibleConnectionFailure

SWITCH = "switch"
DEVICE_GATE = "health gate on the device"
CONTROLLER_GATE = "health gate from the controller"
CONFIRM = "confirm"
REASON_LIMIT = 400


# A soak longer than two of these runs as several gates of this many seconds, with a progress line after each: a
# long soak (minutes, on every device of a batch) is otherwise a silent wait.
SOAK_SLICE = 30


class Unreachable(Exception):
    """The device could not be reached for a step (the connection failed or dropped)."""


def soak_slices(soak, slice_seconds=SOAK_SLICE):
    """The lengths the soak runs in: one piece up to two slices, else slices of ``slice_seconds`` (the last longer)."""
    soak = int(soak)
    if soak <= 2 * slice_seconds:
        return [soak]
    pieces = [slice_seconds] * (soak // slice_seconds)
    pieces[-1] += soak % slice_seconds
    return pieces


def soak_in_slices(gate, probes, soak, progress=None, slice_seconds=SOAK_SLICE):
    """The device's gate with ``soak`` run in slices: ``gate(probes, soak)`` runs one (a module on the device).

    The first slice is the gate as it is (each probe's retries, then its soak); later ones sample every probe once
    (retries 1) and soak on, so that a failed sample still fails at once, as inside one soak. ``progress(done,
    soak, passing, total)`` is told after each slice but the last; the first result that did not pass ends it,
    its message saying at which second of the soak its slice began."""
    pieces = soak_slices(soak, slice_seconds)
    done = 0
    result = None
    for index, piece in enumerate(pieces):
        result = gate(probes if index == 0 else [dict(p, retries=1) for p in probes], piece)
        if result.get("verdict") != "passed":
            if index:
                result = dict(result, msg="%s (in the soak's slice from %d s of %d s)" % (result.get("msg", ""), done, soak))
            return result
        done += piece
        if progress and index < len(pieces) - 1:
            passing = len([p for p in result.get("probes") or [] if p.get("verdict") == "passed"])
            progress(done, soak, passing, len(probes))
    return result


def _reason(step, msg):
    text = " ".join(str(msg or "failed").split())
    if len(text) > REASON_LIMIT:
        text = text[:REASON_LIMIT - 3] + "..."
    return "%s: %s" % (step, text)


def run(ops, generation, previous=None, device_probes=False, controller_probes=False, clock=time.monotonic):
    """Drive one gated switch and return its result; never raises for a device's failure.

    ``ops`` has ``switch()``, ``device_gate()``, ``controller_gate()``, ``confirm()`` and ``rollback(target)``,
    each returning a module-style result (``failed``, ``msg``, ...) or raising Unreachable. ``previous`` is the
    generation a failure rolls back to (default: the device's confirmed generation the switch reports).

    The result: ``outcome`` (confirmed, failed or unreachable), ``step`` (the step that failed, or confirmed),
    ``switched`` (this run moved the device), ``rolled_back`` (by its own gate or by the rollback here),
    ``reason``, ``timings`` (seconds per step), ``gates`` (each gate's verdict and message), and ``incident``
    (what a record of the failure needs; none when confirmed).
    """
    result = {"generation": generation, "previous": previous, "outcome": "failed", "step": SWITCH,
              "switched": False, "rolled_back": False, "reason": "", "timings": {}, "gates": {}, "incident": None}

    def timed(name, call, *args):
        started = clock()
        try:
            return call(*args)
        finally:
            result["timings"][name] = round(clock() - started, 3)

    def fail(step, msg, outcome="failed"):
        result.update(outcome=outcome, step=step, reason=_reason(step, msg))

    try:
        switched = timed("switch", ops.switch)
        result["switched"] = bool(switched.get("changed"))
        if result["previous"] is None and switched.get("confirmed") != generation:
            result["previous"] = switched.get("confirmed")
        if switched.get("failed"):
            # The device's own gate failed the activation and already put the previous generation back.
            result["rolled_back"] = bool(switched.get("rolled_back"))
            fail(SWITCH, switched.get("msg"))
        else:
            _gates(result, ops, timed, fail, device_probes, controller_probes)
    except Unreachable as exc:
        result.update(outcome="unreachable", reason=_reason("unreachable (last step: %s)" % result["step"], exc))
        # No rollback over a connection that just failed (it would wait out its timeouts again): a device that
        # switched reverts by itself when its confirm timeout runs out.
        result["rollback_error"] = "not tried: the device is unreachable"

    if result["outcome"] != "confirmed":
        _roll_back(result, ops, timed)
        result["incident"] = {"what": "gated switch failed", "step": result["step"], "reason": result["reason"],
                              "generation": generation, "previous": result["previous"],
                              "rolled_back": result["rolled_back"]}
    return result


def _gates(result, ops, timed, fail, device_probes, controller_probes):
    # A switch that changed nothing (the generation already ran) needs no gate, only the confirmation.
    if result["switched"] and device_probes:
        result["step"] = DEVICE_GATE
        gate = timed("device_gate", ops.device_gate)
        result["gates"]["device"] = {"verdict": gate.get("verdict"), "msg": gate.get("msg", "")}
        if gate.get("verdict") != "passed":
            return fail(DEVICE_GATE, gate.get("msg"))
    if result["switched"] and controller_probes:
        result["step"] = CONTROLLER_GATE
        gate = timed("controller_gate", ops.controller_gate)
        result["gates"]["controller"] = {"verdict": gate.get("verdict"), "msg": gate.get("msg", "")}
        if gate.get("verdict") != "passed":
            # Nothing answered at all: the device is cut off from the controller, not known to be broken.
            return fail(CONTROLLER_GATE, gate.get("msg"),
                        outcome="unreachable" if gate.get("verdict") == "inconclusive" else "failed")
    result["step"] = CONFIRM
    confirmed = timed("confirm", ops.confirm)
    if confirmed.get("failed"):
        result["rolled_back"] = bool(confirmed.get("rolled_back"))
        return fail(CONFIRM, confirmed.get("msg"))
    result.update(outcome="confirmed", step="confirmed")
    return None


def _roll_back(result, ops, timed):
    """Bring back the generation the device ran before, when this run moved it and nothing did already."""
    if not result["switched"] or result["rolled_back"] or result["previous"] is None or "rollback_error" in result:
        return
    try:
        back = timed("rollback", ops.rollback, result["previous"])
    except Unreachable as exc:
        # A firewall that blocks new logins: the device reverts by itself (dead-man).
        result["rollback_error"] = "unreachable: %s" % exc
        return
    if back.get("failed"):
        result["rollback_error"] = str(back.get("msg") or "failed")
    else:
        result["rolled_back"] = True


def confirm_over_new_connection(connection, execute, attempts=3, what="the switch", sleep=time.sleep, log=None):
    """Run ``execute()`` (the confirm) after dropping the persistent connection, retrying a failed login.

    deploy-rs confirms over the connection it switched with; a firewall change that breaks new SSH logins but
    keeps the established session alive would then be confirmed. Here the ControlPersist master is stopped
    first, so the confirm itself proves that a fresh login still works. Returns (result, fresh, attempt);
    after ``attempts`` failed logins the result is failed and the device reverts by itself.
    """
    last_error = None
    for attempt in range(1, attempts + 1):
        try:
            fresh = drop_connection(connection)
            return execute(), fresh, attempt
        except AnsibleConnectionFailure as exc:
            last_error = exc
            if log:
                log("confirm attempt %d/%d: no new connection: %s" % (attempt, attempts, exc))
            sleep(3)
    return ({"failed": True, "changed": False, "rolled_back": False,
             "msg": "could not open a new connection to confirm %s after %d attempts (%s); the device reverts "
                    "by itself when its confirm timeout runs out" % (what, attempts, last_error)}, True, attempts)


# Connection plugins whose reset() really drops the session (others have nothing to drop).
RESETTABLE = ("ssh", "paramiko", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh")


def drop_connection(connection):
    """Drop the persistent connection so that the next module run logs in again (also the nftables action's)."""
    if getattr(connection, "transport", "") not in RESETTABLE:
        return False
    try:
        connection.reset()  # stops the ControlPersist master
    except AnsibleConnectionFailure:
        pass  # nothing to stop: the next run logs in anyway
    connection.close()  # forgets any in-process session
    return True
