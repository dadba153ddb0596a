# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of edgeops.fleet.gated_switch: the one switch every change goes through.

The order of the steps and the result live in plugin_utils/_switch.py (tested without a device); this plugin
gives them their module runs: the switch, the device's gate and the rollback run edgeops.fleet.generation and
edgeops.fleet.health_check on the device, the controller's gate runs the same probe code here, in-process, and
the confirm drops the persistent connection first so that it proves a new login still works.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.edgeops.fleet.plugins.module_utils import _health as health
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.confirm import timeout_problem
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.probe_schema import ProbeError, number
from ansible_collections.edgeops.fleet.plugins.modules.gated_switch import ARGUMENT_SPEC
from ansible_collections.edgeops.fleet.plugins.plugin_utils import _switch as switch

display = Display()

GENERATION = "edgeops.fleet.generation"
HEALTH_CHECK = "edgeops.fleet.health_check"


def _checked_numbers(args):
    """The numbers the device would only see after it switched (a confirm never tried, a rollback to nothing)."""
    problem = timeout_problem(args["confirm_timeout"])
    if problem:
        raise AnsibleActionFail(problem)
    for key in ("generation", "previous"):
        if args[key] is not None and args[key] < 1:
            raise AnsibleActionFail("%s must be a generation id (an integer of at least 1), got %r" % (key, args[key]))
    if args["confirm_attempts"] < 1:
        raise AnsibleActionFail("confirm_attempts must be at least 1, got %r" % args["confirm_attempts"])
    try:
        number(None, "soak", args["soak"], 0, 86400, integer=True)
    except ProbeError as exc:
        raise AnsibleActionFail(str(exc))


def _validated(probes, soak, key):
    """The gate's probes, validated before the device is touched (the same rules the device applies)."""
    if not probes:
        return []
    try:
        return health.validate_gate(probes, soak)[0]
    except health.HealthError as exc:
        raise AnsibleActionFail("%s: %s" % (key, exc))


class _DeviceSteps:
    """The steps of _switch.run as module runs on the device (and the controller's probes, here)."""

    def __init__(self, action, args, task_vars):
        self.action, self.args, self.task_vars = action, args, task_vars

    def _module(self, name, module_args):
        try:
            res = self.action._execute_module(module_name=name, module_args=module_args, task_vars=self.task_vars)
        except AnsibleConnectionFailure as exc:
            raise switch.Unreachable(str(exc))
        if res.get("unreachable"):
            raise switch.Unreachable(res.get("msg", "unreachable"))
        return res

    def switch(self):
        return self._module(GENERATION, {"state": "switched", "generation": self.args["generation"],
                                         "confirm_timeout": self.args["confirm_timeout"]})

    def device_gate(self):
        host = self.task_vars.get("inventory_hostname", self.action._play_context.remote_addr)

        def gate(probes, soak):
            return self._module(HEALTH_CHECK, {"probes": probes, "soak": soak,
                                               "compose_project": self.args["compose_project"], "fail_on": []})

        def progress(done, soak, passing, total):
            display.display("%s - soak %d/%d s (%d s left), %d of %d probe(s) passing"
                            % (host, done, soak, soak - done, passing, total))

        return switch.soak_in_slices(gate, self.args["probes"], self.args["soak"], progress)

    def controller_gate(self):
        return health.gate(self.args["controller_probes"], fail_on=())

    def confirm(self):
        def execute():
            return self.action._execute_module(module_name=GENERATION, task_vars=self.task_vars,
                                               module_args={"state": "confirmed",
                                                            "generation": self.args["generation"]})
        res, _fresh, _attempt = switch.confirm_over_new_connection(
            self.action._connection, execute, self.args["confirm_attempts"],
            what="generation %s" % self.args["generation"],
            log=lambda text: display.vvv(text, host=self.action._play_context.remote_addr))
        return res

    def rollback(self, target):
        return self._module(GENERATION, {"state": "rolled_back", "generation": target})


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        _checked_numbers(args)
        args["probes"] = _validated(args["probes"], args["soak"], "probes")
        args["controller_probes"] = _validated(args["controller_probes"], 0, "controller_probes")
        steps = _DeviceSteps(self, args, task_vars)
        if self._task.check_mode:
            # The probes would judge the running generation, not the new one: check mode only asks the switch.
            checked = steps.switch()
            result.update(changed=bool(checked.get("changed")), failed=bool(checked.get("failed")),
                          msg=checked.get("msg", ""), outcome="checked", step=None, switched=False,
                          rolled_back=False, generation=args["generation"])
            return result
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        outcome = switch.run(steps, args["generation"], previous=args["previous"],
                             device_probes=bool(args["probes"]), controller_probes=bool(args["controller_probes"]))
        result.update(outcome, started=started)
        result["changed"] = outcome["switched"] or outcome["rolled_back"]
        if outcome["outcome"] != "confirmed":
            result["failed"] = True
            result["msg"] = outcome["reason"]
        return result
