#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: health_check
short_description: Health gate of a staged rollout (passed, failed or inconclusive, with a soak)
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Runs a list of probes and gives each one a verdict (C(passed), C(failed) or C(inconclusive), see the notes),
    then the gate's verdict. A probe passes when it passed and kept passing for O(soak) seconds.
  - The gate's verdict is C(failed) if any probe failed, else C(inconclusive) if any probe is inconclusive, else
    C(passed). The task fails when it is listed in O(fail_on); a rollout sets O(fail_on=[]) and branches on
    RV(verdict).
  - Each probe is tried until it passes or C(retries) attempts were made; the last attempt gives its
    verdict. Probes are interleaved on one schedule, so this first pass takes about as long as the slowest probe.
  - With O(soak), once every probe has its first verdict and none failed, the probes that passed are sampled
    again every C(interval) seconds (at least 0.5 s) until O(soak) seconds have passed. A single failed
    sample fails the probe (RV(probes[].failed_at) says when) and ends the gate; an unreachable sample makes the
    probe inconclusive. The whole gate takes about the slowest first pass plus O(soak).
  - Runs on the device (the default) or on the controller with C(delegate_to=localhost); C(container), C(systemd)
    and C(command) probes look at the host the module runs on.
  - The probes are the health checks of a release (M(edgeops.fleet.generation)), one schema and one implementation
    (see the notes), so a release's C(health_checks) can be used as probes once each has a name.
options:
  probes:
    description:
      - The probes, each a mapping with C(name), C(type) and the keys of its type, as the notes describe.
        Unknown keys and missing or invalid values are refused before anything is probed, naming the probe
        (index and name) and the key.
    type: list
    elements: dict
    required: true
  soak:
    description:
      - Seconds during which every probe must keep passing after the first pass. V(0) checks once (with retries).
    type: int
    default: 0
  compose_project:
    description: The compose project of the C(container) probes' services.
    type: str
    default: edgeops
  fail_on:
    description:
      - The gate verdicts that fail the task. With V([]) the task never fails because of a verdict; use RV(verdict).
    type: list
    elements: str
    choices: [failed, inconclusive]
    default: [failed, inconclusive]
attributes:
  check_mode:
    support: full
    description: The probes only read, so they run in check mode as well and the result is the same.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to compare.
  platform:
    support: full
    platforms: posix
    description: The device (Debian/Ubuntu) or the controller; the probes use the Python standard library only.
  idempotent:
    support: full
    description: Never changes anything (RV(ignore:changed) is always false).
  action_group:
    support: full
    description: Use C(group/edgeops.fleet.rollout) in C(module_defaults) to set defaults such as O(compose_project).
    membership:
      - edgeops.fleet.rollout
notes:
  - Uses the Python standard library only; C(container) probes need the C(docker) CLI on the probed host.
  - In process on the controller, the function C(gate) of C(plugins/module_utils/_health.py) validates and runs the
    same gate.
extends_documentation_fragment:
  - edgeops.fleet.probes
seealso:
  - module: edgeops.fleet.generation
"""

EXAMPLES = r"""
- name: Gate a device after switching its generation (30 s soak), let the rollout decide
  edgeops.fleet.health_check:
    soak: 30
    fail_on: []
    probes:
      - name: predictor-health
        type: http
        url: http://127.0.0.1:8080/health
        body: ok
      - name: predictor-predict
        type: http
        url: http://127.0.0.1:8080/predict?x=1
        body_regex: '"score":\s*[0-9.]+'
      - name: predictor-container
        type: container
        service: predictor
      - name: docker
        type: systemd
        unit: docker.service
  register: gate

- name: Roll back when the gate failed; hold the device when it was unreachable
  edgeops.fleet.generation:
    state: rolled_back
  when: gate.verdict == 'failed'

- name: From the controller - the device answers on its service port and its latency is in bounds
  edgeops.fleet.health_check:
    probes:
      - name: ssh
        type: tcp
        host: "{{ ansible_host }}"
        port: 22
        timeout: 3
      - name: latency-p99
        type: metric
        url: "http://{{ ansible_host }}:9100/metrics"
        metric: predictor_latency_seconds
        labels:
          quantile: "0.99"
        op: "<"
        threshold: 0.25
        retries: 5
        interval: 5
  delegate_to: localhost

- name: A command probe
  edgeops.fleet.health_check:
    probes:
      - name: model-loaded
        type: command
        argv: [/usr/local/bin/healthcheck, --model]
"""

RETURN = r"""
verdict:
  description: The gate's verdict.
  returned: when the probes ran
  type: str
  choices: [passed, failed, inconclusive]
  sample: failed
passed:
  description: Whether RV(verdict) is C(passed).
  returned: when the probes ran
  type: bool
  sample: false
probes:
  description: The verdict of each probe, in the order of O(probes).
  returned: when the probes ran
  type: list
  elements: dict
  contains:
    name:
      description: The probe's name.
      type: str
      returned: always
      sample: predictor-predict
    type:
      description: The probe's type.
      type: str
      returned: always
      sample: http
    verdict:
      description: C(passed), C(failed) or C(inconclusive).
      type: str
      returned: always
      sample: failed
    attempts:
      description: Attempts made in the first pass.
      type: int
      returned: always
      sample: 1
    samples:
      description: Samples taken during the soak.
      type: int
      returned: always
      sample: 6
    detail:
      description: What the last attempt or sample saw (for a failed or inconclusive probe, why).
      type: str
      returned: always
      sample: GET http://127.0.0.1:8080/predict?x=1 returned 500, expected 200
    passed_at:
      description: Seconds from the start of the gate at which the probe first passed, or null.
      type: float
      returned: always
      sample: 0.012
    failed_at:
      description: Seconds from the start of the gate at which a soak sample failed, or null.
      type: float
      returned: always
      sample: 12.031
duration:
  description: Seconds the gate took.
  returned: when the probes ran
  type: float
  sample: 30.112
msg:
  description: One line about the outcome.
  returned: always
  type: str
  sample: "probe predictor-predict failed during soak at 12.031 s: GET http://127.0.0.1:8080/predict?x=1 returned 500, expected 200"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeops.fleet.plugins.module_utils import _health as health


def main():
    module = AnsibleModule(
        argument_spec=dict(
            probes=dict(type="list", elements="dict", required=True),
            soak=dict(type="int", default=0),
            compose_project=dict(type="str", default="edgeops"),
            fail_on=dict(type="list", elements="str", default=[health.FAILED, health.INCONCLUSIVE],
                         choices=[health.FAILED, health.INCONCLUSIVE]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = health.gate(params["probes"], params["soak"], params["fail_on"], params["compose_project"])
    except health.HealthError as exc:
        module.fail_json(msg=str(exc), changed=False)
    result["changed"] = False
    if result.pop("fail"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
