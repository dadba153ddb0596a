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
  - The C(ProxyJump) is added to the C(ansible_ssh_common_args) a site's, profile's or device's C(vars) set (the
    last of them that sets it), after them; it never replaces them. Those arguments may not choose a jump host of
    their own (C(-J), C(ProxyJump), C(ProxyCommand)) when the site has a bastion. A bastion that names a device of
    the fleet (by name, or address and port) must name one of its own site; that device is reached directly.
  - What is the same for every member of a group is a group variable, inherited by the hosts. The site group has
    the site's C(vars), C(edgeops_site), C(edgeops_network), C(registry_address), C(workloads_registry) and
    C(ansible_ssh_common_args); C(profile_<profile>) has the profile's C(vars), C(edgeops_profile) and
    C(edgeops_gpus); C(wave_<n>) has C(edgeops_wave); C(edge_devices) has C(edgeops_rollout) and the
    C(ansible_port), C(edgeops_tags), C(edgeops_release) and C(edgeops_channel) most devices have (a device with
    another value has its own as a host variable). Host variables are C(ansible_host), C(ansible_user), those that
    differ from C(edge_devices), and the device's C(vars). A host's effective variables are as if all were host
    variables applied in this order (later wins) C(edgeops_rollout), site vars, profile vars, derived variables, device vars; a name used by both
    a site and a profile stays a host variable so that this order holds.
  - Being group variables of the inventory, site, profile and wave variables rank below C(group_vars/) files next to
    the inventory or the playbook (Ansible's variable precedence), which the earlier host variables did not.
  - C(edgeops_rollout) is the normalised rollout policy (JSON types) - C(wave_plan) as written (for example
    C([1, "10%", "100%"])), C(canary_tag), C(site_cap) (a fraction), C(salt), C(soak)
    (seconds, default 60), C(failure_threshold) (percent, default 10; a rollout aborts when failed*100/executed
    exceeds it), C(min_executed) (default 1; the threshold applies from that many executed devices),
    C(unreachable) (C(fail) or C(pause), default C(fail)), C(rollback_switched) (default true),
    C(confirm_timeout) (seconds >= 15, default 300), C(environment) (default C(production)) and
    C(approval_waived) (default false, refused in C(production)). The wave numbers in use are the C(wave_<n>)
    groups.
  - A malformed fleet file is refused naming the file, the key and what was expected; unknown keys are errors.
    So is a file that is not UTF-8, is larger than 8 MiB, is not YAML (line and column), gives a key twice in a
    mapping (both lines), nests collections more than 100 deep, has aliases that expand to more than
    max(100000, its size in bytes) nodes, or tags other than YAML's own and Ansible's C(!vault)/C(!unsafe).
    Site names C(all), C(ungrouped), C(edge_devices) and names starting with C(wave_), C(tag_) or C(profile_) are
    refused (they are groups of their own).
  - Every value from the fleet file is untrusted (unsafe) for templating. The file is read as plain YAML; a
    vaulted file is decrypted first, and a file with C(!vault)/C(!unsafe) values is then loaded by Ansible's
    loader (after the same checks).
  - The configuration file must end in C(.fleet.yml) or C(.fleet.yaml) (so it also works as an AWX inventory
    source checked into the repository).
  - Options of C(constructed) cost one template per device and option at load time; without them none runs.
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

import functools
import gc
import hashlib
import os
import sys

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import (
    SSH_ARGS, FleetError, assign_waves, load_fleet, policy_for_json, ssh_common_args)
from ansible_collections.edgeops.fleet.plugins.plugin_utils._yaml_input import (
    YAMLInputError, expect_mapping, load_yaml, read_input)
from ansible_collections.edgeops.fleet.plugins.plugin_utils import _fleet as _fleet_module
from ansible_collections.edgeops.fleet.plugins.plugin_utils import _yaml_input as _yaml_input_module

# Variables the plugin derives from a site (set on the site's group), a profile (on profile_<name>), the wave (on
# wave_<n>) and the fleet (on edge_devices). Hosts inherit them: one group variable instead of one per host saves
# most of Ansible's per-host work at scale. (A variable name two kinds of group would carry stays per host.)
SITE_DERIVED = ("edgeops_site", "edgeops_network", "registry_address", "workloads_registry", "ansible_ssh_common_args")
PROFILE_DERIVED = ("edgeops_profile", "edgeops_gpus")
WAVE_DERIVED = ("edgeops_wave",)
FLEET_DERIVED = ("edgeops_rollout",)
# Derived per device, but most devices of a fleet share the value: the most common one is a variable of edge_devices
# and only the devices that differ carry their own. Each host variable costs Ansible time on every load and a line in
# every `ansible-inventory --list`.
DEVICE_DEFAULTED = ("ansible_port", "edgeops_tags", "edgeops_release", "edgeops_channel")
# Ansible's own YAML tags: a fleet file using them is checked by _yaml_input, then loaded by Ansible's loader.
ANSIBLE_TAGS = ("!vault", "!vault-encrypted", "!unsafe")


@functools.lru_cache(maxsize=None)
def _code_digest():
    """What the layout depends on besides the fleet file: the code that parses, checks and lays it out."""
    digest = hashlib.sha256()
    for module in (sys.modules[__name__], _fleet_module, _yaml_input_module):
        with open(module.__file__, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def _digest(raw):
    return hashlib.sha256(_code_digest().encode("ascii") + raw).hexdigest()[:32]


def _group_name(prefix, value):
    return "%s_%s" % (prefix, str(value).replace("-", "_"))


def site_derived(name, site):
    """What the plugin derives from a site: edgeops_site, edgeops_network, the registry, ProxyJump (after the
    site's own ansible_ssh_common_args, if its vars have them)."""
    derived = {"edgeops_site": name, "edgeops_network": site["network"]}
    if site["registry"]:
        derived["registry_address"] = site["registry"]
        derived["workloads_registry"] = site["registry"]
    if site["bastion"]:
        derived[SSH_ARGS] = ssh_common_args(site["vars"].get(SSH_ARGS), site["bastion"])
    return derived


def device_ssh_args(fleet, name):
    """A device's ansible_ssh_common_args behind a bastion, or None: the last of its site's, its profile's and its
    own vars that sets them, then the bastion's ProxyJump; the bastion's own device gets no ProxyJump (not through
    itself: it is reached directly), so "" when nothing sets them."""
    device = fleet["devices"][name]
    site = fleet["sites"][device["site"]]
    bastion = site["bastion"]
    if not bastion:
        return None
    own = site["vars"].get(SSH_ARGS)
    if device["profile"]:
        own = fleet["profiles"][device["profile"]]["vars"].get(SSH_ARGS, own)
    own = device["vars"].get(SSH_ARGS, own)
    return (own or "") if bastion["device"] == name else ssh_common_args(own, bastion)


def profile_derived(name, profile):
    """What the plugin derives from a hardware profile (a device without one: None and 0 GPUs)."""
    return {"edgeops_profile": name, "edgeops_gpus": profile["gpus"] if profile else 0}


def device_derived(device, wave):
    """What the plugin derives from the device itself."""
    derived = {
        "ansible_host": device["address"],
        "ansible_port": device["port"],
        "edgeops_tags": list(device["tags"]),
        "edgeops_wave": wave,
        "edgeops_release": device["release"],
        "edgeops_channel": device["channel"],
    }
    if device["user"]:
        derived["ansible_user"] = device["user"]
    return derived


def reference_vars(fleet, waves, name):
    """A device's variables by definition (later ones win): edgeops_rollout, the site's vars, the profile's vars,
    what the plugin derives from the site, the profile and the device, and the device's own vars."""
    device = fleet["devices"][name]
    site = fleet["sites"][device["site"]]
    profile = fleet["profiles"][device["profile"]] if device["profile"] else None
    variables = {"edgeops_rollout": policy_for_json(fleet["rollout"])}
    variables.update(site["vars"])
    if profile:
        variables.update(profile["vars"])
    variables.update(site_derived(device["site"], site))
    variables.update(profile_derived(device["profile"], profile))
    variables.update(device_derived(device, waves[name]))
    variables.update(device["vars"])
    ssh_args = device_ssh_args(fleet, name)
    if ssh_args is not None:
        variables[SSH_ARGS] = ssh_args
    return variables


def _most_common(variables, keys):
    """{key: (value, marker)} for the value most of ``variables`` (dicts) have for each key; ties go to the value
    seen first. The marker (repr: lists are not hashable, and True == 1) tells values apart."""
    shared = {}
    for key in keys:
        counts, values = {}, {}
        for entry in variables:
            marker = repr(entry[key])
            counts[marker] = counts.get(marker, 0) + 1
            if marker not in values:
                values[marker] = entry[key]
        if counts:
            marker = max(counts, key=counts.get)
            shared[key] = (values[marker], marker)
    return shared


def inventory_layout(fleet, waves):
    """What the plugin hands to Ansible, JSON types only (so it can be cached).

    ``{"groups": {group: group vars}, "hosts": {device: {"groups": [...], "vars": host vars}}}``. The rollout policy
    (``edgeops_rollout``) is a variable of ``edge_devices``; what a site, a profile or a wave gives its devices is a
    variable of that group; the rest is per host. Every host's effective variables equal reference_vars(): a
    variable that more than one kind of group would carry (a profile var named like a site var, say) stays per
    host, where it has the reference value, since Ansible would otherwise merge sibling groups by name.
    """
    devices = fleet["devices"]
    used_sites = set(device["site"] for device in devices.values())
    used_profiles = set(device["profile"] for device in devices.values() if device["profile"])
    site_vars = {}
    for name in used_sites:
        site_vars[name] = dict(fleet["sites"][name]["vars"])
        site_vars[name].update(site_derived(name, fleet["sites"][name]))
    profile_vars = {}
    for name in used_profiles:
        profile_vars[name] = dict(fleet["profiles"][name]["vars"])
        profile_vars[name].update(profile_derived(name, fleet["profiles"][name]))
    kinds = [set(FLEET_DERIVED) | set(DEVICE_DEFAULTED), set(WAVE_DERIVED)]
    kinds.append(set(key for group_vars in site_vars.values() for key in group_vars) | set(SITE_DERIVED))
    kinds.append(set(key for group_vars in profile_vars.values() for key in group_vars) | set(PROFILE_DERIVED))
    per_host = set(key for index, keys in enumerate(kinds) for other in kinds[index + 1:] for key in keys & other)

    def lifted(group_vars):
        return dict((key, value) for key, value in group_vars.items() if key not in per_host)

    derived = dict((name, device_derived(device, waves[name])) for name, device in devices.items())
    shared = _most_common(derived.values(), [key for key in DEVICE_DEFAULTED if key not in per_host])
    defaults = dict((key, value) for key, (value, _marker) in shared.items())
    groups = {"edge_devices": lifted(dict(defaults, edgeops_rollout=policy_for_json(fleet["rollout"])))}
    for name in used_sites:
        groups[name] = lifted(site_vars[name])
    profile_groups = {}
    for name in used_profiles:
        profile_groups[name] = _group_name("profile", name)
        groups[profile_groups[name]] = lifted(profile_vars[name])
    for wave in set(waves.values()):
        groups["wave_%d" % wave] = lifted({"edgeops_wave": wave})
    tag_groups = {}
    hosts = {}
    wave_on_group = "edgeops_wave" not in per_host
    for name, device in devices.items():
        wave = waves[name]
        hostvars = derived[name]
        if wave_on_group:
            del hostvars["edgeops_wave"]
        for key, (_value, marker) in shared.items():
            if repr(hostvars[key]) == marker:
                del hostvars[key]
        if not device["profile"]:
            hostvars.update(profile_derived(None, None))
        if per_host:
            reference = reference_vars(fleet, waves, name)
            for key in per_host:
                if key in reference:
                    hostvars[key] = reference[key]
        if device["vars"]:
            hostvars.update(device["vars"])
        ssh_args = device_ssh_args(fleet, name)
        if ssh_args is not None and (SSH_ARGS in hostvars or ssh_args != groups[device["site"]].get(SSH_ARGS)):
            hostvars[SSH_ARGS] = ssh_args  # the site group's value does not hold for this device
        member_of = ["edge_devices", device["site"], "wave_%d" % wave]
        for tag in device["tags"]:
            group = tag_groups.get(tag)
            if group is None:
                group = tag_groups[tag] = _group_name("tag", tag)
                groups[group] = {}
            member_of.append(group)
        if device["profile"]:
            member_of.append(profile_groups[device["profile"]])
        hosts[name] = {"groups": member_of, "vars": hostvars}
    return {"groups": groups, "hosts": hosts}


def effective_vars(layout, name):
    """A host's variables from a layout: its groups' variables, then its own (what Ansible will see)."""
    entry = layout["hosts"][name]
    variables = {}
    for group in entry["groups"]:
        variables.update(layout["groups"][group])
    variables.update(entry["vars"])
    return variables


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "edgeops.fleet.fleet"
    # Nothing in a fleet file is a template: every value the plugin sets is marked untrusted (unsafe) by Ansible.
    trusted_by_default = False

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith((".fleet.yml", ".fleet.yaml"))

    def _read_fleet_file(self, fleet_path, raw=None):
        """(the fleet file's data, whether it may be cached); YAMLInputError for input _yaml_input refuses (also
        inside a vaulted file). A vaulted file, or one with !vault values, is never cached: the cache would hold
        its secrets in the clear."""
        raw = read_input(fleet_path) if raw is None else raw
        vaulted = raw.lstrip().startswith(b"$ANSIBLE_VAULT")
        if vaulted:
            raw = self.loader.get_text_file_contents(fleet_path).encode("utf-8", "surrogateescape")
        data, tagged = load_yaml(raw, fleet_path, foreign_tags=ANSIBLE_TAGS)
        expect_mapping(data, fleet_path, empty=True)
        if tagged:
            # !vault/!unsafe values: Ansible's loader, on a file already checked (no duplicate keys, bounded
            # aliases). unsafe=True only skips its deep copy of data nothing else holds.
            return self.loader.load_from_file(fleet_path, cache="none", unsafe=True), False
        return data, not vaulted

    def _fleet_path(self, path):
        fleet_path = os.path.expanduser(self.get_option("fleet_file"))
        if not os.path.isabs(fleet_path):
            fleet_path = os.path.join(os.path.dirname(path), fleet_path)
        if not os.path.isfile(fleet_path):
            raise AnsibleParserError("%s: fleet_file %s does not exist" % (path, fleet_path))
        return fleet_path

    def _load(self, fleet_path, raw):
        """(layout, whether it may be cached)."""
        try:
            data, cacheable = self._read_fleet_file(fleet_path, raw)
            fleet = load_fleet(data, source=fleet_path)
        except (YAMLInputError, FleetError) as exc:
            raise AnsibleParserError(str(exc))
        return inventory_layout(fleet, assign_waves(fleet)), cacheable

    def parse(self, inventory, loader, path, cache=True):
        # Python's cyclic garbage collector runs again and again while tens of thousands of dicts, lists and hosts
        # are made, and finds nothing to free (a fleet file makes no cycles): paused, a load of 10,000 devices
        # takes about a fifth less CPU (benchmarks/fleet_inventory.py). Restored as it was, whatever happens.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._parse(inventory, loader, path, cache)
        finally:
            if collecting:
                gc.enable()

    def _parse(self, inventory, loader, path, cache):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        fleet_path = self._fleet_path(path)
        try:
            raw = read_input(fleet_path)
        except YAMLInputError as exc:
            raise AnsibleParserError(str(exc))
        # The layout is cached under what it was made from: the fleet file's bytes and this plugin's code. A changed
        # file or plugin is read again, never served stale; the cache only skips the parse and the checks.
        cache_key = "%s_%s" % (self.get_cache_key(path), _digest(raw))
        use_cache = self.get_option("cache") and cache
        layout = None
        if use_cache:
            try:
                layout = self._cache[cache_key]
            except KeyError:
                pass
            if not isinstance(layout, dict) or sorted(layout) != ["groups", "hosts"]:
                layout = None  # nothing cached, or cached in another shape
        if layout is None:
            layout, cacheable = self._load(fleet_path, raw)
            if self.get_option("cache") and cacheable:
                self._cache[cache_key] = layout
        self._populate(layout)

    def _populate(self, layout):
        inventory = self.inventory
        add_child = inventory.add_child
        set_variable = inventory.set_variable
        for group in sorted(layout["groups"]):
            inventory.add_group(group)
            for key, value in layout["groups"][group].items():
                set_variable(group, key, value)
        hosts = layout["hosts"]
        for name in sorted(hosts):
            entry = hosts[name]
            member_of = entry["groups"]
            inventory.add_host(name, group=member_of[0])
            for group in member_of[1:]:
                add_child(group, name)
            for key, value in entry["vars"].items():
                set_variable(name, key, value)
        compose, groups, keyed_groups = (self.get_option(o) for o in ("compose", "groups", "keyed_groups"))
        if not (compose or groups or keyed_groups):
            return  # nothing to construct: no per-host templating at all
        strict = self.get_option("strict")
        for name in sorted(hosts):
            variables = effective_vars(layout, name)
            self._set_composite_vars(compose, variables, name, strict=strict)
            self._add_host_to_composed_groups(groups, variables, name, strict=strict)
            self._add_host_to_keyed_groups(keyed_groups, variables, name, strict=strict)
