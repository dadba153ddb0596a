# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of edgeops.fleet.generation: confirm only over a NEW connection.

deploy-rs confirms over the connection it switched with; a firewall change that breaks new SSH
logins but keeps the established session alive would then be confirmed. Here the persistent SSH
connection (ControlPersist master) is stopped before the confirm, so the confirm itself proves
that a fresh login still works. If it cannot get in, the task fails and the device reverts by
itself when its dead-man timer runs out. The same confirm is the last step of
edgeops.fleet.gated_switch (plugin_utils/_switch.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.validation import check_type_int
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.edgeops.fleet.plugins.plugin_utils._switch import confirm_over_new_connection

display = Display()

MODULE = "edgeops.fleet.generation"


class ActionModule(ActionBase):

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        if args.get("state") != "confirmed":
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result

        try:
            attempts = check_type_int(args.pop("confirm_attempts", 3))
        except TypeError:
            attempts = 0
        if attempts < 1:
            # Checked here: with no attempt the confirm never reaches the device, which then reverts by itself.
            result.update(failed=True, changed=False,
                          msg="confirm_attempts must be an integer of at least 1, got %r" % (
                              self._task.args.get("confirm_attempts"),))
            return result
        module_result, fresh, attempt = confirm_over_new_connection(
            self._connection,
            lambda: self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars),
            attempts, what="generation %s" % args.get("generation", "(pending)"),
            log=lambda text: display.vvv(text, host=self._play_context.remote_addr))
        result.update(module_result)
        result["fresh_connection"] = fresh
        result["confirm_attempts"] = attempt
        return result
