#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: generation_info
short_description: List a device's generations, pointers, incidents and drift
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Reads the generations kept on the device, which one is current, which one was last confirmed, whether a
    switch is pending (and its deadline), the incident log, and how the running device differs from the
    current generation (drift).
  - Waits for a running generation operation (switch, revert, boot recovery) to finish, so it never reports
    half an operation.
options:
  incidents_after:
    description: Return only incidents with a sequence number above this one (to collect new ones only).
    type: int
    default: 0
  drift:
    description: Compare the running files, nftables table and containers with the current generation.
    type: bool
    default: true
  images:
    description: Report the images on the device, their disk size and which kept generations use them.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Read-only.
  diff_mode:
    support: none
    description: Read-only.
  platform:
    support: full
    platforms: posix
    description: Devices with the state directory of M(edgeops.fleet.generation).
  idempotent:
    support: full
    description: Read-only.
seealso:
  - module: edgeops.fleet.generation
"""

EXAMPLES = r"""
- name: Read the generations of the device
  edgeops.fleet.generation_info:
  register: gens

- name: Collect incidents newer than the last one already collected
  edgeops.fleet.generation_info:
    incidents_after: "{{ last_seen_seq | default(0) }}"
    drift: false
  register: news
"""

RETURN = r"""
current:
  description: The generation the device runs (its C(current) pointer), or null.
  returned: always
  type: int
confirmed:
  description: The last confirmed generation, or null.
  returned: always
  type: int
pending:
  description: The switched but not yet confirmed generation, or null.
  returned: always
  type: int
generations:
  description: Every kept generation with id, release, created, state, current, confirmed, deadline, reason,
    intact (artifacts match the manifest), images, and when it was last switched to and confirmed (switched_at,
    confirmed_at; null when never).
  returned: always
  type: list
  elements: dict
history:
  description: Confirmed generations, oldest first.
  returned: always
  type: list
  elements: int
boot_failures:
  description: Boots in a row at which a generation failed its health checks.
  returned: always
  type: dict
incidents:
  description: Incident records (seq, time, host, what, from, to, reason) after O(incidents_after).
  returned: always
  type: list
  elements: dict
drift:
  description: How the running device differs from the current generation (empty when it runs exactly that).
  returned: when O(drift=true)
  type: list
  elements: str
images:
  description: Images on the device (id, references, size in bytes, generations using them), largest first.
  returned: when O(images=true)
  type: list
  elements: dict
images_total_bytes:
  description: Disk used by all images (shared layers counted once per image, as C(docker image inspect) sizes them).
  returned: when O(images=true)
  type: int
images_used_bytes:
  description: Part of images_total_bytes used by kept generations.
  returned: when O(images=true)
  type: int
images_unused_bytes:
  description: Part of images_total_bytes no kept generation uses (what a prune can reclaim at most).
  returned: when O(images=true)
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.config import load_config
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.errors import GenerationError
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.store import Store


def main():
    module = AnsibleModule(
        argument_spec=dict(
            incidents_after=dict(type="int", default=0),
            drift=dict(type="bool", default=True),
            images=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    try:
        store = Store(load_config())
        result = store.listing(incidents_after=module.params["incidents_after"], live=module.params["drift"])
        if module.params["images"]:
            result.update(store.image_report())
    except GenerationError as exc:
        module.fail_json(msg=exc.message)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
