# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one gated switch's order of steps and its result (plugin_utils/_switch.py).

The steps are a recording stand-in for the device (``Device`` below): each answers as the modules do and
notes that it was called, so the tests see which steps ran, in which order, and what the result says.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.errors import AnsibleConnectionFailure

from ansible_collections.edgeops.fleet.plugins.plugin_utils import _switch as switch


class Device:
    """Stand-in for the device's module runs: answers given per step, calls recorded in order."""

    def __init__(self, **answers):
        self.calls = []
        self.answers = {"switch": {"changed": True, "confirmed": 3, "current": 4},
                        "device_gate": {"verdict": "passed", "msg": "2 probe(s) passed"},
                        "controller_gate": {"verdict": "passed", "msg": "1 probe(s) passed"},
                        "confirm": {"changed": True}, "rollback": {"changed": True}}
        self.answers.update(answers)

    def _answer(self, step, *args):
        self.calls.append((step,) + args)
        answer = self.answers[step]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def switch(self):
        return self._answer("switch")

    def device_gate(self):
        return self._answer("device_gate")

    def controller_gate(self):
        return self._answer("controller_gate")

    def confirm(self):
        return self._answer("confirm")

    def rollback(self, target):
        return self._answer("rollback", target)


def steps(device):
    return [call[0] for call in device.calls]


def test_all_gates_pass_then_confirm():
    device = Device()
    result = switch.run(device, 4, device_probes=True, controller_probes=True)
    assert steps(device) == ["switch", "device_gate", "controller_gate", "confirm"]
    assert result["outcome"] == "confirmed" and result["step"] == "confirmed"
    assert result["switched"] is True and result["rolled_back"] is False and result["incident"] is None
    assert result["previous"] == 3  # the confirmed generation the switch reported
    assert set(result["timings"]) == {"switch", "device_gate", "controller_gate", "confirm"}
    assert result["gates"]["device"]["verdict"] == "passed"


def test_gates_without_probes_are_skipped():
    device = Device()
    result = switch.run(device, 4, device_probes=False, controller_probes=False)
    assert steps(device) == ["switch", "confirm"] and result["outcome"] == "confirmed"
    assert result["gates"] == {}


def test_unchanged_switch_only_confirms():
    device = Device(switch={"changed": False, "confirmed": 4, "current": 4})
    result = switch.run(device, 4, device_probes=True, controller_probes=True)
    assert steps(device) == ["switch", "confirm"]
    assert result["outcome"] == "confirmed" and result["switched"] is False and result["previous"] is None


def test_failed_device_gate_rolls_back_to_previous_and_skips_confirm():
    device = Device(device_gate={"verdict": "failed", "msg": "predictor: HTTP 500"})
    result = switch.run(device, 4, previous=2, device_probes=True, controller_probes=True)
    assert steps(device) == ["switch", "device_gate", "rollback"]
    assert device.calls[-1] == ("rollback", 2)
    assert result["outcome"] == "failed" and result["step"] == switch.DEVICE_GATE
    assert result["reason"] == "health gate on the device: predictor: HTTP 500"
    assert result["rolled_back"] is True
    assert result["incident"] == {"what": "gated switch failed", "step": switch.DEVICE_GATE,
                                  "reason": result["reason"], "generation": 4, "previous": 2, "rolled_back": True}


def test_inconclusive_controller_gate_is_unreachable_not_failed():
    device = Device(controller_gate={"verdict": "inconclusive", "msg": "no route to host"})
    result = switch.run(device, 4, device_probes=False, controller_probes=True)
    assert steps(device) == ["switch", "controller_gate", "rollback"]
    assert result["outcome"] == "unreachable" and result["step"] == switch.CONTROLLER_GATE


def test_failed_controller_gate_is_failed():
    device = Device(controller_gate={"verdict": "failed", "msg": "HTTP 503"})
    result = switch.run(device, 4, device_probes=False, controller_probes=True)
    assert result["outcome"] == "failed" and result["rolled_back"] is True


def test_switch_the_device_reverted_itself_is_not_rolled_back_again():
    device = Device(switch={"failed": True, "changed": True, "rolled_back": True, "confirmed": 3,
                            "msg": "health check api failed"})
    result = switch.run(device, 4, device_probes=True, controller_probes=True)
    assert steps(device) == ["switch"]
    assert result["outcome"] == "failed" and result["step"] == "switch" and result["rolled_back"] is True
    assert result["reason"] == "switch: health check api failed"


def test_failed_confirm_rolls_back():
    device = Device(confirm={"failed": True, "msg": "could not open a new connection"})
    result = switch.run(device, 4, device_probes=False)
    assert steps(device) == ["switch", "confirm", "rollback"]
    assert result["outcome"] == "failed" and result["step"] == "confirm" and result["rolled_back"] is True


def test_unreachable_during_gate_leaves_the_revert_to_the_dead_man():
    device = Device(device_gate=switch.Unreachable("ssh: connection timed out"))
    result = switch.run(device, 4, device_probes=True)
    assert steps(device) == ["switch", "device_gate"]  # no rollback over a connection that just failed
    assert result["outcome"] == "unreachable" and result["step"] == switch.DEVICE_GATE
    assert result["reason"].startswith("unreachable (last step: health gate on the device): ssh")
    assert result["rolled_back"] is False and "unreachable" in result["rollback_error"]


def test_rollback_that_cannot_log_in_is_reported():
    device = Device(confirm={"failed": True, "msg": "could not open a new connection"},
                    rollback=switch.Unreachable("ssh: connection refused"))
    result = switch.run(device, 4)
    assert steps(device) == ["switch", "confirm", "rollback"]
    assert result["rolled_back"] is False and result["rollback_error"] == "unreachable: ssh: connection refused"


def test_unreachable_switch_is_not_rolled_back():
    device = Device(switch=switch.Unreachable("no route"))
    result = switch.run(device, 4, previous=3)
    assert steps(device) == ["switch"]  # nothing says the device switched
    assert result["outcome"] == "unreachable" and result["switched"] is False


def test_no_previous_generation_no_rollback():
    device = Device(switch={"changed": True, "confirmed": None}, device_gate={"verdict": "failed", "msg": "x"})
    result = switch.run(device, 1, device_probes=True)
    assert steps(device) == ["switch", "device_gate"]
    assert result["outcome"] == "failed" and result["rolled_back"] is False


def test_failed_rollback_is_reported():
    device = Device(device_gate={"verdict": "failed", "msg": "x"}, rollback={"failed": True, "msg": "disk full"})
    result = switch.run(device, 4, device_probes=True)
    assert result["rolled_back"] is False and result["rollback_error"] == "disk full"


def test_long_reasons_are_cut():
    device = Device(device_gate={"verdict": "failed", "msg": "x" * 2000})
    result = switch.run(device, 4, device_probes=True)
    assert len(result["reason"]) <= len(switch.DEVICE_GATE) + 2 + switch.REASON_LIMIT


def test_timings_use_the_clock():
    ticks = iter(range(100))
    result = switch.run(Device(), 4, clock=lambda: next(ticks))
    assert result["timings"] == {"switch": 1, "confirm": 1}


class Connection:
    """Stand-in for an SSH connection plugin: counts resets."""

    transport = "ssh"

    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1

    def close(self):
        pass


def test_confirm_drops_the_connection_and_retries_a_failed_login():
    connection, answers = Connection(), [AnsibleConnectionFailure("refused"), {"changed": True}]

    def execute():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result, fresh, attempt = switch.confirm_over_new_connection(connection, execute, 3, sleep=lambda s: None)
    assert result == {"changed": True} and fresh is True and attempt == 2 and connection.resets == 2


def test_confirm_gives_up_after_the_attempts():
    def execute():
        raise AnsibleConnectionFailure("refused")

    result, fresh, attempt = switch.confirm_over_new_connection(Connection(), execute, 2, what="generation 7",
                                                                sleep=lambda s: None)
    assert result["failed"] is True and attempt == 2
    assert "confirm generation 7 after 2 attempts (refused)" in result["msg"]


@pytest.mark.parametrize("transport,dropped", [("ssh", True), ("local", False)])
def test_only_resettable_connections_are_dropped(transport, dropped):
    connection = Connection()
    connection.transport = transport
    assert switch.drop_connection(connection) is dropped and connection.resets == int(dropped)


# ---- the soak in slices (a progress line after each) ----

def test_a_short_soak_is_one_gate_and_a_long_one_runs_in_slices():
    assert switch.soak_slices(0) == [0]
    assert switch.soak_slices(60) == [60]
    assert switch.soak_slices(61) == [30, 31]
    assert switch.soak_slices(300) == [30] * 10
    assert sum(switch.soak_slices(1000)) == 1000


def test_the_slices_keep_the_first_gates_retries_then_sample_once_and_report_progress():
    probes = [{"name": "web", "retries": 5}, {"name": "db", "retries": 3}]
    calls, told = [], []

    def gate(given, soak):
        calls.append(([p["retries"] for p in given], soak))
        return {"verdict": "passed", "msg": "2 probe(s) passed", "probes": [{"verdict": "passed"}, {"verdict": "passed"}]}

    result = switch.soak_in_slices(gate, probes, 100, lambda *args: told.append(args))
    assert result["verdict"] == "passed"
    assert calls == [([5, 3], 30), ([1, 1], 30), ([1, 1], 40)]
    assert told == [(30, 100, 2, 2), (60, 100, 2, 2)]
    assert probes[0]["retries"] == 5  # the caller's probes are not changed


def test_a_slice_that_fails_ends_the_soak_and_says_when():
    answers = iter([{"verdict": "passed", "probes": []},
                    {"verdict": "failed", "msg": "probe web failed during soak at 12 s: 500", "probes": []}])
    calls = []

    def gate(given, soak):
        calls.append(soak)
        return next(answers)

    result = switch.soak_in_slices(gate, [{"name": "web", "retries": 3}], 120)
    assert calls == [30, 30] and result["verdict"] == "failed"
    assert result["msg"] == "probe web failed during soak at 12 s: 500 (in the soak's slice from 30 s of 120 s)"
