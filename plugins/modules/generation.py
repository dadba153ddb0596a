#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: generation
short_description: Stage, switch, confirm, roll back and garbage-collect device generations
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - A generation is everything that decides what runs on an edge device for one release a compose v2 file,
    the nftables ruleset of our own C(inet edgeops) table, libvirt domain XML, config files and the release's
    local health checks, plus a manifest with the sha256 of each artifact. Generations are numbered, immutable
    and kept under the agent's state directory (default C(/var/lib/edgeops)).
  - O(state=staged) writes a new generation and validates it on the device (C(nft -c), C(docker compose config),
    C(virt-xml-validate), images present or pulled) without changing what runs.
  - O(state=switched) arms a dead-man timer on the device, swaps the C(current) pointer atomically, activates the
    generation and runs its local health checks. A failing activation or health check rolls the device back at
    once and the task fails with the reason. Otherwise the device reverts by itself unless O(state=confirmed)
    follows before O(confirm_timeout) runs out.
  - O(state=confirmed) makes the switched generation the last confirmed one. The collection's action plugin of the
    same name closes the controller's existing connection first, so the confirm proves that management access
    survived the switch. If the device already reverted, the task fails and says why.
  - O(state=rolled_back) goes back to any kept generation by id (default the previous confirmed one).
  - O(state=gc) keeps the newest O(keep) generations (plus the current and confirmed ones) and removes older
    ones and the images only they used.
  - M(edgeops.fleet.generation_info) lists generations, pointers, incidents and drift.
  - The device needs the agent installed by the M(edgeops.fleet.agent) role (dead-man and boot recovery units);
    the module and the agent share one implementation (module_utils C(_generations)).
options:
  state:
    description: The operation to perform.
    type: str
    required: true
    choices: [staged, switched, confirmed, rolled_back, gc]
  release:
    description:
      - The release to stage (O(state=staged)). Keys C(id) (required), C(compose) (mapping or YAML text),
        C(nftables) (text that defines only C(table inet edgeops)), C(vms) (name to domain XML), C(files)
        (list of C(path), C(content), C(mode)) and C(health_checks).
      - C(health_checks) is a list of probes, the schema of M(edgeops.fleet.health_check) described in the notes
        (C(name) optional here). The device runs them after a switch, a rollback and at boot; an unreachable target
        counts as a failure there.
      - Unknown keys are refused, naming the key, before anything is written.
      - Only with O(state=staged) (refused otherwise).
    type: dict
  generation:
    description:
      - The generation to switch to, confirm or roll back to.
      - Defaults to the newest generation for O(state=switched), the pending one for O(state=confirmed) and
        the previous confirmed one for O(state=rolled_back).
      - A generation the device does not keep is refused, naming the kept ones (V(0) too; it is not read as the
        default). Refused with O(state=staged) and O(state=gc), which do not use it.
    type: int
  confirm_timeout:
    description:
      - Seconds the device waits for O(state=confirmed) after a switch before reverting by itself.
      - At least 10 (the minimum of every commit-confirmed change of this collection, M(edgeops.fleet.nftables)
        too); the activation and the health checks run within it.
    type: int
    default: 120
  health_checks:
    description: Run the generation's local health checks after a switch or rollback.
    type: bool
    default: true
  pull:
    description: When staging, pull images that are not present on the device (a switch itself never pulls).
    type: bool
    default: true
  keep:
    description: Number of newest generations O(state=gc) keeps (the current and confirmed ones are always kept).
    type: int
    default: 5
  confirm_attempts:
    description:
      - With O(state=confirmed), how many times the action plugin tries to open a new connection before it
        gives up (the device then reverts by itself). Used by the action plugin only; at least 1.
    type: int
    default: 3
attributes:
  check_mode:
    support: full
    description:
      - Reports what the operation would do, and fails where it would fail (an unknown generation, nothing to roll
        back to, a missing or outdated agent for a switch or rollback that changes something).
      - Staging validates the release's shape only, not with the device's tools (a converge installs them in the
        same run).
  diff_mode:
    support: full
    description: Artifacts of the current and the staged generation, or the current pointer before and after.
  platform:
    support: full
    platforms: posix
    description: Debian/Ubuntu devices with systemd; Docker, nftables and libvirt when a generation uses them.
  idempotent:
    support: full
    description: Staging the same release again returns the existing generation; switching to the current one is a no-op.
notes:
  - Run on the device as root.
  - Everything that can be refused is refused before the state directory is touched (its lock creates it); the
    release's artifacts are validated with the device's tools in a scratch directory outside it.
extends_documentation_fragment:
  - edgeops.fleet.probes
seealso:
  - module: edgeops.fleet.generation_info
  - name: deploy-rs magic rollback
    description: The dead-man confirmation this module improves on.
    link: https://github.com/serokell/deploy-rs
"""

EXAMPLES = r"""
- name: Stage the release (validated on the device, nothing running changes)
  edgeops.fleet.generation:
    state: staged
    release:
      id: "2026.11.2"
      compose:
        services:
          predictor:
            image: registry.site01.example/predictor@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
            restart: unless-stopped
      health_checks:
        - name: predictor-http
          type: http
          url: http://127.0.0.1:8080/health
          retries: 10
          interval: 2
  register: staged

- name: Switch; the device reverts by itself unless confirmed within 120 s
  edgeops.fleet.generation:
    state: switched
    generation: "{{ staged.generation }}"

- name: Confirm over a fresh connection after the controller's health gate
  edgeops.fleet.generation:
    state: confirmed
    generation: "{{ staged.generation }}"

- name: Roll back to generation 3
  edgeops.fleet.generation:
    state: rolled_back
    generation: 3

- name: Keep the newest 5 generations
  edgeops.fleet.generation:
    state: gc
    keep: 5
"""

RETURN = r"""
generation:
  description: The generation staged, switched to, confirmed or rolled back to.
  returned: when O(state) is staged, switched, confirmed or rolled_back
  type: int
  sample: 4
current:
  description: The generation the device runs (its C(current) pointer) after the operation.
  returned: always
  type: int
  sample: 4
confirmed:
  description: The last confirmed generation after the operation.
  returned: always
  type: int
  sample: 3
pending:
  description: The switched but not yet confirmed generation, if any.
  returned: always
  type: int
  sample: 4
deadline:
  description: UTC time at which the device reverts a pending switch.
  returned: when O(state=switched)
  type: str
  sample: "2026-11-23T10:02:00Z"
rolled_back:
  description: Whether the device rolled back (failed activation or health check, or an earlier dead-man revert).
  returned: when O(state) is switched or confirmed
  type: bool
reason:
  description: Why the device rolled back.
  returned: when rolled_back is true
  type: str
health:
  description: Result of each local health check (name, type, passed, attempts, detail).
  returned: when health checks ran
  type: list
  elements: dict
generations:
  description: Every kept generation with id, release, created, state, current, confirmed, reason, intact, images.
  returned: always
  type: list
  elements: dict
incidents:
  description: Incident records (seq, time, host, what, from, to, reason) the operation caused.
  returned: always
  type: list
  elements: dict
removed:
  description: Generations removed (or that would be) by O(state=gc).
  returned: when O(state=gc)
  type: list
  elements: int
images_removed:
  description: Images removed by O(state=gc) because only removed generations used them.
  returned: when O(state=gc)
  type: list
  elements: str
ssh_connection:
  description: The SSH_CONNECTION the module ran under (client address and port), to tell connections apart.
  returned: always
  type: str
"""

import os
import signal

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.config import (
    AGENT_VERSION, installed_agent_version, load_config)
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.confirm import DEFAULT_CONFIRM_TIMEOUT
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.errors import GenerationError
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.plans import next_generation_id
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.store import Store


def _artifacts_text(store, generation):
    """Concatenated artifacts of a generation, for diff mode."""
    if generation is None:
        return ""
    man = store.manifest(generation) or {"artifacts": {}}
    chunks = []
    for rel in sorted(man["artifacts"]):
        with open(os.path.join(store.gen_dir(generation), rel)) as handle:
            chunks.append("# --- %s\n%s\n" % (rel, handle.read().rstrip()))
    return "".join(chunks)


def _irrelevant(params):
    """An option the state does not use (a mistaken state, most likely), or None."""
    state = params["state"]
    if params["release"] is not None and state != "staged":
        return "release is used only with state=staged (state=%s)" % state
    if params["generation"] is not None and state in ("staged", "gc"):
        return "generation is not used with state=%s (it names the generation to switch to, confirm or roll back to)" \
            % state
    return None


def _plan(store, params):
    """What the operation would do, refused exactly as the operation refuses it; reads only (check mode's answer)."""
    state = params["state"]
    if state == "staged":
        norm, arts, existing = store.plan_stage(params["release"])
        generation = existing if existing is not None else next_generation_id(store.generation_ids())
        return {"changed": existing is None, "generation": generation, "release": norm, "artifacts": arts}
    if state == "switched":
        return store.plan_switch(params["generation"], params["confirm_timeout"])
    if state == "confirmed":
        return store.plan_confirm(params["generation"])
    if state == "rolled_back":
        return store.plan_rollback(params["generation"])
    kept, removed, images = store.plan_gc(params["keep"])
    return {"changed": bool(removed), "kept": kept, "removed": removed, "images_removed": images}


def _check_mode(module, store, plan, result):
    if module.params["state"] == "staged":
        result.update(changed=plan["changed"], generation=plan["generation"])
        if module._diff:
            current, arts = store.pointer("current"), plan["artifacts"]
            after = "".join("# --- %s\n%s\n" % (rel, arts[rel].decode("utf-8").rstrip()) for rel in sorted(arts))
            result["diff"] = {"before": _artifacts_text(store, current), "after": after,
                              "before_header": "generation %s" % current,
                              "after_header": "release %s" % plan["release"]["id"]}
    else:
        result.update(plan)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", required=True, choices=["staged", "switched", "confirmed", "rolled_back", "gc"]),
            release=dict(type="dict"),
            generation=dict(type="int"),
            confirm_timeout=dict(type="int", default=DEFAULT_CONFIRM_TIMEOUT),
            health_checks=dict(type="bool", default=True),
            pull=dict(type="bool", default=True),
            keep=dict(type="int", default=5),
            confirm_attempts=dict(type="int", default=3),
        ),
        required_if=[("state", "staged", ["release"])],
        supports_check_mode=True,
    )
    params = module.params
    state = params["state"]
    result = {"changed": False, "ssh_connection": os.environ.get("SSH_CONNECTION", "")}
    irrelevant = _irrelevant(params)
    if irrelevant:
        module.fail_json(msg=irrelevant, **result)
    first_new_incident = 0
    store = None
    try:
        store = Store(load_config())
        first_new_incident = len(store.incidents())
        # Everything is refused here, before the operation takes the lock (which creates the state directory), and
        # check mode answers with the same plan, so that it fails where the real run fails.
        plan = _plan(store, params)
        if state in ("switched", "rolled_back") and plan["changed"]:
            installed = installed_agent_version()
            if installed != AGENT_VERSION:
                module.fail_json(msg="the device agent is %s but this module needs version %s: apply the "
                                     "edgeops.fleet.agent role first (it installs the dead-man and boot recovery units)"
                                     % ("not installed" if installed is None else "version %s" % installed,
                                        AGENT_VERSION), **result)
        before = store.pointer("current")
        if module.check_mode:
            _check_mode(module, store, plan, result)
        elif state == "staged":
            result.update(store.stage(params["release"], pull=params["pull"]))
            if result["changed"] and module._diff:
                result["diff"] = {"before": _artifacts_text(store, before),
                                  "after": _artifacts_text(store, result["generation"]),
                                  "before_header": "generation %s" % before,
                                  "after_header": "generation %s" % result["generation"]}
        elif state == "switched":
            # A firewall change may cut this SSH session: finish the switch anyway, the dead-man
            # timer decides what happens next.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            result.update(store.switch(params["generation"], params["confirm_timeout"], health=params["health_checks"]))
        elif state == "confirmed":
            result.update(store.confirm(params["generation"]))
        elif state == "rolled_back":
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            result.update(store.rollback(params["generation"], health=params["health_checks"]))
        elif state == "gc":
            result.update(store.gc(params["keep"]))
        after = store.pointer("current")
        if state in ("switched", "rolled_back") and module._diff and before != after:
            result["diff"] = {"before": "current: %s\n" % before, "after": "current: %s\n" % after}
        listing = store.listing(incidents_after=first_new_incident)
        result.update(dict((k, v) for k, v in listing.items() if k not in ("history", "boot_failures")))
    except GenerationError as exc:
        result.update(exc.details)
        if exc.artifact:
            result["artifact"] = exc.artifact
        if store is not None:
            try:
                result.update(dict((k, v) for k, v in store.listing(incidents_after=first_new_incident).items()
                                   if k in ("current", "confirmed", "pending", "incidents", "generations")))
            except Exception:  # the error itself is what matters
                pass
        if exc.details.get("reverted"):
            result["rolled_back"] = True
            result["reason"] = exc.message
        module.fail_json(msg=exc.message, **result)
    if result.get("rolled_back") and state == "switched":
        module.fail_json(msg=result["reason"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
