# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Commit-confirmed, the one mechanism of generations (the dead-man) and of the nftables module.

A change that may cut the controller off is armed, not trusted: a transient systemd timer, independent of the
SSH session that armed it, reverts the change unless the controller confirms it over a NEW connection first
(the action plugins of both modules open that connection); the revert and the confirm take one lock, so
exactly one of them wins. The pending change is one record, ``{token, unit, now, apply_at, revert_at}`` (device
clock): the nftables module keeps it in ``<family>-<table>.pending`` under /run; generations keep its deadline
in state.json, the ``current``/``confirmed`` pointers staying the authority (the boot unit undoes a switch a
power loss left unconfirmed).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from .sysio import atomic_write, read_text

# The smallest confirm timeout of both: a login over a new connection (and, for nftables, the 2 s apply
# delay) must fit in it. Generations also need their activation and health checks to fit: the default is 120.
MIN_CONFIRM_TIMEOUT = 10
DEFAULT_CONFIRM_TIMEOUT = 120


def timeout_problem(timeout, zero_disables=False):
    """Why ``timeout`` cannot be a confirm timeout, or None (0 may mean "no confirm" to the caller)."""
    if zero_disables and timeout == 0:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < MIN_CONFIRM_TIMEOUT:
        return "confirm_timeout must be %sat least %d s, got %r" % (
            "0 (no confirm) or " if zero_disables else "an integer of ", MIN_CONFIRM_TIMEOUT, timeout)
    return None


def arm_timer(run, unit, delay, description, argv=None):
    """Start ``unit`` ``delay`` s from now from a transient systemd timer; returns an error text or None.

    Without ``argv`` the timer starts the installed ``<unit>.service`` (edgeops-deadman@N, a template of the
    agent role); with it, a transient service running ``argv``. A unit armed again replaces its old timer.
    """
    disarm_timer(run, unit)
    run(["systemctl", "reset-failed", unit + ".timer", unit + ".service"], timeout=30)
    command = ["--unit=%s.service" % unit] if argv is None else ["--unit=%s" % unit]
    command += ["--on-active=%ds" % delay, "--timer-property=AccuracySec=100ms"]
    if argv is not None:
        command += ["--collect", "--description=%s" % description] + list(argv)
    else:
        command.append("--description=%s" % description)
    rc, out, err = run(["systemd-run"] + command, timeout=30)
    return None if rc == 0 else (err or out).strip() or "systemd-run exited %d" % rc


def disarm_timer(run, unit):
    run(["systemctl", "stop", unit + ".timer"], timeout=30)


def pending_record(token, unit, timeout, now=None, delay=0):
    """The pending change: applied ``delay`` s after ``now``, reverted ``timeout`` s after that."""
    now = time.time() if now is None else now
    return {"token": token, "unit": unit, "now": now, "apply_at": now + delay, "revert_at": now + delay + timeout}


def write_pending(path, record):
    atomic_write(path, json.dumps(record, sort_keys=True), 0o600)


def read_pending(path):
    text = read_text(path)
    return json.loads(text) if text else None


def pending_message(what, record):
    """Why ``what`` must not be changed (or reported as it is) while the change of ``record`` may revert."""
    return ("%s: a commit-confirmed change (token %s, systemd timer %s) is pending until %s (it reverts by itself "
            "unless confirmed); re-run after it has reverted or been confirmed"
            % (what, record.get("token"), record.get("unit"),
               time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.get("revert_at", 0)))))
