#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gated_switch
short_description: Switch a device to a staged generation through its health gates, confirm it, or roll it back
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - The one way a change reaches a running device - the workloads role, every rollout wave and a secret rotation
    (and later VMs) call it. In order
  - 1. B(switch) to generation O(generation) (M(edgeops.fleet.generation) C(state=switched)); the device arms its
    dead-man timer (O(confirm_timeout)) and its own activation checks revert it at once when they fail;
  - 2. B(the device's gate) - O(probes) run on the device (M(edgeops.fleet.health_check)), sampled for O(soak)
    seconds;
  - 3. B(the controller's gate) - O(controller_probes) run from the controller (HTTP or TCP to the device's
    services); when none of them gets an answer the outcome is C(unreachable), not C(failed);
  - 4. B(confirm over a new connection) - the persistent SSH connection is dropped first, so the confirm proves
    that a new login still works (a firewall that only lets established sessions through is never confirmed);
  - on any failure after the device switched, B(roll back) to O(previous); when even that cannot reach the device,
    the device reverts by itself when its dead-man timer runs out.
  - A switch that changes nothing (the generation already runs) skips the gates and only confirms.
  - Runs as an action plugin on the controller; the probes and the numbers (O(confirm_timeout), O(confirm_attempts),
    O(soak), the generation ids) are validated before the device is touched.
  - The task fails unless the outcome is C(confirmed); a caller that records outcomes (a rollout wave) sets
    C(failed_when=false) and reads RV(outcome).
options:
  generation:
    description: The staged generation to switch to (M(edgeops.fleet.generation) C(state=staged) returns it).
    type: int
    required: true
  previous:
    description:
      - The generation a failure rolls back to. Default the device's confirmed generation before the switch.
    type: int
  confirm_timeout:
    description: Seconds after which the device reverts by itself unless the switch is confirmed (its dead-man timer), at
      least 10.
    type: int
    default: 120
  confirm_attempts:
    description: New logins tried for the confirm before giving up (the device then reverts by itself), at least 1.
    type: int
    default: 3
  probes:
    description:
      - The device's gate, run on the device after the switch - probes as M(edgeops.fleet.health_check) takes them
        (a release's C(health_checks) are such probes). V([]) means no device gate.
    type: list
    elements: dict
    default: []
  soak:
    description:
      - Seconds during which the device's probes must keep passing (see M(edgeops.fleet.health_check)), 0 to 86400.
      - A soak longer than 60 s runs in slices of 30 s (the first with each probe's retries, the next ones sampling
        each probe once, so a failed sample still fails at once) and prints a progress line after each one
        (for example C(site01-dev03 - soak 30/120 s (90 s left), 2 of 2 probe(s) passing)).
    type: int
    default: 0
  compose_project:
    description: The compose project of the C(container) probes.
    type: str
    default: edgeops
  controller_probes:
    description: The controller's gate, run from the controller after the device's gate; V([]) means none.
    type: list
    elements: dict
    default: []
attributes:
  action:
    support: full
    description: The steps are driven by the action plugin on the controller; each device step is a module run.
  check_mode:
    support: partial
    details: Asks the device whether it would switch; no gate runs and nothing is confirmed.
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    support: none
    description: The switch's own diff is that of M(edgeops.fleet.generation).
  platform:
    support: full
    platforms: posix
    description: Target OS/families that can be operated against.
seealso:
  - module: edgeops.fleet.generation
  - module: edgeops.fleet.health_check
"""

EXAMPLES = r"""
- name: Switch, soak 60 s under the release's health checks, confirm (or roll back)
  edgeops.fleet.gated_switch:
    generation: "{{ staged.generation }}"
    probes: "{{ release_health_checks }}"
    soak: 60
    confirm_timeout: 180

- name: Record the outcome instead of failing (a rollout wave)
  edgeops.fleet.gated_switch:
    generation: "{{ staged.generation }}"
    previous: "{{ before.confirmed }}"
    controller_probes:
      - {name: predictor, type: http, url: "http://{{ ansible_host }}:8080/health"}
  register: wave_result
  failed_when: false
"""

RETURN = r"""
outcome:
  description: C(confirmed), C(failed) or C(unreachable); C(checked) in check mode.
  returned: always
  type: str
step:
  description:
    - The step that failed (C(switch), C(health gate on the device), C(health gate from the controller), C(confirm)),
      or C(confirmed).
  returned: always
  type: str
switched:
  description: Whether this run moved the device to O(generation).
  returned: always
  type: bool
rolled_back:
  description: Whether the device is back on the previous generation (its own activation check, or the rollback).
  returned: always
  type: bool
reason:
  description: "Why it failed: the step, a colon and the message; empty when confirmed."
  returned: always
  type: str
previous:
  description: The generation a failure rolls back to.
  returned: always
  type: int
started:
  description: UTC time at which the switch began.
  returned: unless in check mode
  type: str
  sample: "2026-11-24T10:00:00Z"
timings:
  description: Seconds spent in each step that ran (C(switch), C(device_gate), C(controller_gate), C(confirm), C(rollback)).
  returned: always
  type: dict
gates:
  description: The verdict and message of each gate that ran (C(device), C(controller)).
  returned: always
  type: dict
incident:
  description: What a record of the failure needs (C(what), C(step), C(reason), C(generation), C(previous), C(rolled_back)).
  returned: when the outcome is not confirmed
  type: dict
rollback_error:
  description: Why the rollback after a failure did not happen (the device then reverts by itself).
  returned: when a rollback was tried and failed
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

# Also the action plugin's (plugins/action/gated_switch.py), which does the work.
ARGUMENT_SPEC = dict(
    generation=dict(type="int", required=True),
    previous=dict(type="int"),
    confirm_timeout=dict(type="int", default=120),
    confirm_attempts=dict(type="int", default=3),
    probes=dict(type="list", elements="dict", default=[]),
    soak=dict(type="int", default=0),
    compose_project=dict(type="str", default="edgeops"),
    controller_probes=dict(type="list", elements="dict", default=[]),
)


def main():
    # Only reached when the action plugin is bypassed (a host without the collection's action plugins).
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.fail_json(msg="edgeops.fleet.gated_switch runs on the controller through its action plugin")


if __name__ == "__main__":
    main()
