# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based fuzzing of the release manifest's, the probes' and the firewall settings' validators.

Whatever the input - mutations of a sample release manifest read through the strict reader, random data, random
probes, random firewall settings - each validator ends in a result or in its own error naming the source and the
key (WorkloadError / AnsibleFilterError, ProbeError, FirewallConfigError), never another exception, and within the
deadline. A manifest the controller accepts is also one the device's own release check accepts. With CI=true the
examples are derandomized (the same examples every run).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os

import yaml
from hypothesis import given
from hypothesis import strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.filter.workloads_release import _workloads_release
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.probe_schema import (
    TYPES, ProbeError, validate_probe)
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.release import validate_release
from ansible_collections.edgeops.fleet.plugins.plugin_utils._firewall import FirewallConfigError, firewall_spec
from ansible_collections.edgeops.fleet.plugins.plugin_utils._yaml_input import (
    YAMLInputError, expect_mapping, load_yaml)
from fuzzing import data, fuzz_settings, mutate_bytes, mutate_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
with open(os.path.join(REPO, "samples", "releases", "demo-1.0.0.yml"), "rb") as _handle:
    MANIFEST_FILE = _handle.read()
with open(os.path.join(REPO, "roles", "workloads", "meta", "argument_specs.yml")) as _handle:
    WORKLOAD_SPEC = yaml.safe_load(_handle)["argument_specs"]["workload"]["options"]
with open(os.path.join(REPO, "roles", "firewall", "meta", "argument_specs.yml")) as _handle:
    FIREWALL_OPTIONS = yaml.safe_load(_handle)["argument_specs"]["main"]["options"]
SOURCE = "releases/demo.yml"

# Few examples (the unit step runs before the labs start: every second here is a second of the suite).
FUZZ = fuzz_settings(40)


def check_release(manifest):
    """The controller's check of a release (workloads_release filter, as check_release.yml calls it); an accepted
    release must pass the device's own check too."""
    try:
        result = _workloads_release(manifest, "site01-hub:5000", "/run/edgeops/secrets", SOURCE, WORKLOAD_SPEC)
    except AnsibleFilterError as exc:
        assert str(exc).startswith(SOURCE + ": "), str(exc)
        return None
    validate_release(copy.deepcopy(result["release"]))
    return result


@FUZZ
@given(st.data())
def test_mutations_of_a_release_manifest_file(draw):
    pieces = [b"\n", b": ", b"- ", b"&a ", b"*a", b"[", b"{", b"\t", b"\xff", b"  ", b"probes: x\n"]
    raw = mutate_bytes(draw, MANIFEST_FILE, st.sampled_from(pieces), most=3)
    try:
        value, _foreign = load_yaml(raw, SOURCE)
        manifest = expect_mapping(value, SOURCE)
    except YAMLInputError as exc:
        assert str(exc).startswith(SOURCE), str(exc)
        return
    check_release(manifest)


@FUZZ
@given(st.data())
def test_mutations_of_release_manifest_data(draw):
    manifest = yaml.safe_load(MANIFEST_FILE)
    for workload in manifest["workloads"].values():
        workload["digest"] = "sha256:" + "ab" * 32
    manifest = mutate_data(draw, manifest)
    before = copy.deepcopy(manifest)
    check_release(manifest)
    assert manifest == before  # the check never changes its input


@FUZZ
@given(st.sampled_from(sorted(TYPES)), st.dictionaries(st.sampled_from(
    ["name", "type", "retries", "interval", "timeout", "url", "status", "host", "port", "service", "unit", "metric",
     "labels", "op", "threshold", "argv", "exit_code", "contains", "bogus"]), data, max_size=6))
def test_random_probes(kind, fields):
    probe = dict(fields)
    probe.setdefault("type", kind)
    try:
        out = validate_probe(probe, 0, "workloads.predictor.probes", named=False)
    except ProbeError as exc:
        assert str(exc).startswith("workloads.predictor.probes[0]"), str(exc)
        return
    assert out["type"] in TYPES and isinstance(out["name"], str)
    assert 1 <= out["retries"] <= 100


@FUZZ
@given(st.data())
def test_random_firewall_settings(draw):
    options = dict((name, option.get("default")) for name, option in FIREWALL_OPTIONS.items())
    for name in draw.draw(st.lists(st.sampled_from(sorted(options)), max_size=4), label="changed"):
        options[name] = draw.draw(data, label=name)
    try:
        spec = firewall_spec(options, ssh_common_args=draw.draw(st.sampled_from(
            ["", "-o ProxyJump=jump@10.0.0.1:22", "-o ProxyJump=bastion.example"]), label="ssh args"),
            controller_address=draw.draw(st.sampled_from(["", "10.0.0.9", "fd00::9", "x"]), label="controller"))
    except FirewallConfigError as exc:
        assert str(exc), exc
        return
    assert spec["table"] and spec["state"] in ("present", "absent")
