# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of edgeops.fleet.generation: confirm only over a NEW connection.

deploy-rs confirms over the connection it switched with; a firewall change that breaks new SSH
logins but keeps the established session alive would then be confirmed. Here the persistent SSH
connection (ControlPersist master) is stopped before the confirm, so the confirm itself proves
that a fresh login still works. If it cannot get in, the task fails and the device reverts by
itself when its dead-man timer runs out.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

MODULE = "edgeops.fleet.generation"
# Connection plugins whose reset() really drops the session (others have nothing to drop).
RESETTABLE = ("ssh", "paramiko", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh")


class ActionModule(ActionBase):

    def _fresh_connection(self):
        """Drop the persistent connection so that the next module run logs in again."""
        transport = getattr(self._connection, "transport", "")
        if transport not in RESETTABLE:
            return False
        self._connection.reset()
        # reset() stops the ControlPersist master; close() forgets any in-process session.
        self._connection.close()
        return True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        if args.get("state") != "confirmed":
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result

        attempts = int(args.pop("confirm_attempts", 3))
        last_error = None
        for attempt in range(1, attempts + 1):
            try:
                fresh = self._fresh_connection()
                module_result = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
            except AnsibleConnectionFailure as exc:
                last_error = exc
                display.vvv("confirm attempt %d/%d: no new connection: %s" % (attempt, attempts, exc),
                            host=self._play_context.remote_addr)
                time.sleep(3)
                continue
            result.update(module_result)
            result["fresh_connection"] = fresh
            result["confirm_attempts"] = attempt
            return result
        result.update(failed=True, changed=False, fresh_connection=True, rolled_back=False,
                      msg="could not open a new connection to confirm generation %s after %d attempts (%s); "
                          "the device reverts by itself when its confirm timeout runs out"
                          % (args.get("generation", "(pending)"), attempts, last_error))
        return result
