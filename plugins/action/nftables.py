# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of edgeops.fleet.nftables: read ``src``; commit-confirmed over a NEW connection.

With ``confirm_timeout`` the module only arms the change (saves the table, schedules the apply 2 s later and the
revert after the timeout, both as systemd timers on the device). This plugin then waits for the apply, drops
the persistent SSH connection (ControlPersist master), and confirms over a new login, so a ruleset that still
lets the established session through but refuses new logins is never confirmed. If no login gets through, the
device restores the previous table by itself; the plugin keeps trying past the timeout, and when it gets in it
reports ``reverted: true`` and fails, saying so (the pattern of community.general.iptables_state).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.common.validation import check_type_int
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.edgeops.fleet.plugins.plugin_utils._switch import drop_connection

display = Display()

MODULE = "edgeops.fleet.nftables"
# Seconds between two login attempts while the change waits for its confirm.
RETRY_PAUSE = 2
INTERNAL = ("pending", "now")


def revert_message(family, table, timeout, attempts, last_error, outcome):
    """The failure message of a change the device reverted by itself."""
    after = ""
    if outcome.get("reverted_at") and outcome.get("applied_at"):
        after = " %.1f s after it was applied" % (outcome["reverted_at"] - outcome["applied_at"])
    how = "restored the previous table" if outcome.get("revert_outcome") == "restored" else \
        "removed the table (the previous one did not load back)"
    return ("table %s %s: the change was not confirmed over a new connection within confirm_timeout=%d s "
            "(%d login attempt(s); last error: %s), so the device %s by itself%s (reverted: true). The new ruleset "
            "most likely blocks new SSH logins from this controller: check the management networks and the "
            "bastion it allows." % (family, table, timeout, attempts, last_error or "none", how, after))


def _seconds(args, key, default):
    """An integer option the plugin uses itself (the module checks its range, on the device)."""
    value = args.get(key)
    if value is None:
        return default
    try:
        return check_type_int(value)
    except TypeError:
        raise AnsibleError("%s must be a whole number of seconds, got %r" % (key, value))


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("table", "family", "content", "src", "state", "confirm_timeout", "recovery_timeout"))

    def _read_src(self, args):
        src = args.pop("src")
        if args.get("content") is not None:
            raise AnsibleError("content and src are mutually exclusive")
        path = self._find_needle("files", src)
        with open(path, "rb") as handle:
            args["content"] = to_text(handle.read(), errors="surrogate_or_strict")

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        try:
            if args.get("src") is not None:
                self._read_src(args)
            # The plugin reads these itself: refused here by name instead of failing in int().
            timeout = _seconds(args, "confirm_timeout", 0)
            recovery = _seconds(args, "recovery_timeout", 60)
        except AnsibleError as exc:
            result.update(failed=True, msg=to_text(exc))
            return result
        if timeout <= 0 or self._play_context.check_mode:
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result

        armed = self._execute_module(module_name=MODULE, module_args=dict(args, _phase="arm"), task_vars=task_vars)
        if armed.get("failed") or not armed.get("pending"):
            result.update(armed)
            return result
        result.update(dict((k, v) for k, v in armed.items() if k not in INTERNAL))

        # Device times -> controller times (the two clocks need not agree).
        offset = time.time() - armed["now"]
        apply_local = armed["apply_at"] + offset
        revert_local = armed["revert_at"] + offset
        give_up = revert_local + recovery
        time.sleep(max(0.0, apply_local + 1.0 - time.time()))

        confirm_args = {"table": args["table"], "family": args.get("family", "inet"), "_phase": "confirm",
                        "_change": armed["token"]}
        attempts = 0
        last_error = None
        fresh = False
        while True:
            attempts += 1
            fresh = drop_connection(self._connection) or fresh
            self._connection._shell.tmpdir = None
            try:
                confirmed = self._execute_module(module_name=MODULE, module_args=confirm_args, task_vars=task_vars)
                break
            except AnsibleConnectionFailure as exc:
                last_error = to_text(exc).strip().splitlines()[-1] if to_text(exc).strip() else repr(exc)
                display.vvv("nftables confirm attempt %d: no new connection: %s" % (attempts, last_error),
                            host=self._play_context.remote_addr)
                if time.time() >= give_up:
                    result.update(failed=True, changed=True, confirmed=False, reverted=None, fresh_connection=fresh,
                                  confirm_attempts=attempts,
                                  msg="table %s %s: no new connection could confirm the change within "
                                      "confirm_timeout=%d s, and the device is still unreachable %d s after it "
                                      "should have restored its previous table (last error: %s)"
                                      % (confirm_args["family"], args["table"], timeout,
                                         int(time.time() - revert_local), last_error))
                    return result
                time.sleep(RETRY_PAUSE)

        result["fresh_connection"] = fresh
        result["confirm_attempts"] = attempts
        invocation = result.get("invocation", {}).get("module_args", {})
        for key in [k for k in invocation if k.startswith("_")]:
            del invocation[key]
        if confirmed.get("failed"):
            result.update(confirmed)
            result["changed"] = False
            return result
        for key in ("listing", "confirmed", "reverted", "revert_outcome", "applied_at", "reverted_at", "revert_at"):
            if key in confirmed:
                result[key] = confirmed[key]
        if confirmed.get("reverted"):
            result.update(failed=True, changed=False,
                          msg=revert_message(confirm_args["family"], args["table"], timeout, attempts, last_error,
                                             confirmed))
        return result
