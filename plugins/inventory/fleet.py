# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: fleet
short_description: Edge devices, sites and rollout waves from an edgeops fleet file
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Reads a fleet file (sites with bastion, registry and network facts; devices with address, hardware profile,
    tags and pinned release or channel; hardware profiles; rollout policy) and builds the inventory.
  - Groups C(edge_devices), one per site (the site's name), C(tag_<tag>), C(profile_<profile>) and C(wave_<n>).
  - Assigns every device a rollout wave without state (canary tag or a stable hash; percentage waves; a per-site
    cap), sets C(ProxyJump) through the site's bastion, and the site registry as C(registry_address) and
    C(workloads_registry).
  - A malformed fleet file is refused naming the file, the key and what was expected; unknown keys are errors.
  - The configuration file must end in C(.fleet.yml) or C(.fleet.yaml) (so it also works as an AWX inventory
    source checked into the repository).
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin.
    required: true
    type: str
    choices: [edgeops.fleet.fleet]
  fleet_file:
    description: The fleet file, relative to the directory of this configuration file (or absolute).
    required: true
    type: str
"""

EXAMPLES = r"""
# inventories/production/edge.fleet.yml
plugin: edgeops.fleet.fleet
fleet_file: fleet.yml
keyed_groups:
  - key: edgeops_channel
    prefix: channel
"""

import os

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.edgeops.fleet.plugins.module_utils._fleet import FleetError, assign_waves, load_fleet


def _group_name(prefix, value):
    return "%s_%s" % (prefix, str(value).replace("-", "_"))


def host_entries(fleet, waves):
    """Device name -> (groups, host variables), from a validated fleet and its waves."""
    entries = {}
    for name, device in fleet["devices"].items():
        site = fleet["sites"][device["site"]]
        profile = fleet["profiles"].get(device["profile"] or "", {"gpus": 0, "vars": {}})
        hostvars = {}
        hostvars.update(site["vars"])
        hostvars.update(profile["vars"])
        hostvars.update({
            "ansible_host": device["address"],
            "ansible_port": device["port"],
            "edgeops_site": device["site"],
            "edgeops_tags": device["tags"],
            "edgeops_profile": device["profile"],
            "edgeops_gpus": profile["gpus"],
            "edgeops_wave": waves[name],
            "edgeops_release": device["release"],
            "edgeops_channel": device["channel"],
            "edgeops_network": site["network"],
        })
        if device["user"]:
            hostvars["ansible_user"] = device["user"]
        if site["registry"]:
            hostvars["registry_address"] = site["registry"]
            hostvars["workloads_registry"] = site["registry"]
        if site["bastion"]:
            bastion = site["bastion"]
            jump = "%s%s:%d" % ("%s@" % bastion["user"] if bastion["user"] else "", bastion["host"], bastion["port"])
            hostvars["ansible_ssh_common_args"] = "-o ProxyJump=%s" % jump
        hostvars.update(device["vars"])
        groups = ["edge_devices", device["site"], "wave_%d" % waves[name]]
        groups += [_group_name("tag", tag) for tag in device["tags"]]
        if device["profile"]:
            groups.append(_group_name("profile", device["profile"]))
        entries[name] = (groups, hostvars)
    return entries


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "edgeops.fleet.fleet"

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith((".fleet.yml", ".fleet.yaml"))

    def _load(self, path):
        fleet_path = os.path.expanduser(self.get_option("fleet_file"))
        if not os.path.isabs(fleet_path):
            fleet_path = os.path.join(os.path.dirname(path), fleet_path)
        if not os.path.isfile(fleet_path):
            raise AnsibleParserError("%s: fleet_file %s does not exist" % (path, fleet_path))
        try:
            fleet = load_fleet(self.loader.load_from_file(fleet_path, cache="none"), source=fleet_path)
        except FleetError as exc:
            raise AnsibleParserError(str(exc))
        waves = assign_waves(fleet)
        return dict((name, {"groups": groups, "vars": hostvars})
                    for name, (groups, hostvars) in host_entries(fleet, waves).items())

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        hosts = None
        if use_cache:
            try:
                hosts = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if hosts is None:
            hosts = self._load(path)
        if update_cache:
            self._cache[cache_key] = hosts
        strict = self.get_option("strict")
        for name in sorted(hosts):
            entry = hosts[name]
            self.inventory.add_host(wrap_var(name))
            for group in entry["groups"]:
                self.inventory.add_group(group)
                self.inventory.add_child(group, name)
            for key, value in entry["vars"].items():
                self.inventory.set_variable(name, key, wrap_var(value))
            self._set_composite_vars(self.get_option("compose"), entry["vars"], name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), entry["vars"], name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), entry["vars"], name, strict=strict)
