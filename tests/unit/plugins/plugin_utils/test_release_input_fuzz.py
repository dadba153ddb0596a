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
import datetime
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.edgeops.fleet.plugins.filter.workloads_release import _workloads_release
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.probe_schema import (
    TYPES, ProbeError, validate_probe)
from ansible_collections.edgeops.fleet.plugins.module_utils._generations.release import validate_release
from ansible_collections.edgeops.fleet.plugins.plugin_utils._firewall import FirewallConfigError, firewall_spec
from ansible_collections.edgeops.fleet.plugins.plugin_utils._yaml_input import (
    YAMLInputError, expect_mapping, load_yaml)
from conftest import in_ci

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
with open(os.path.join(REPO, "samples", "releases", "demo-1.0.0.yml"), "rb") as _handle:
    MANIFEST_FILE = _handle.read()
with open(os.path.join(REPO, "roles", "workloads", "meta", "argument_specs.yml")) as _handle:
    WORKLOAD_SPEC = yaml.safe_load(_handle)["argument_specs"]["workload"]["options"]
with open(os.path.join(REPO, "roles", "firewall", "meta", "argument_specs.yml")) as _handle:
    FIREWALL_OPTIONS = yaml.safe_load(_handle)["argument_specs"]["main"]["options"]
SOURCE = "releases/demo.yml"

# Few examples (the unit step runs before the labs start: every second here is a second of the suite).
FUZZ = settings(max_examples=40, deadline=datetime.timedelta(seconds=2), derandomize=in_ci(), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                    st.sampled_from(["", "0", "1", "yes", "256m", "1.5", "-1", "10s", "http://127.0.0.1:8080/",
                                     "127.0.0.1", "10.0.0.0/8", "fd00::/64", "site", "any", "tcp", "CMD"]))
keys = st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none())
data = st.recursive(
    scalars, lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=5)),
    max_leaves=30)


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, prefix + (index,))


def mutate(draw, value, steps):
    """Replace the values at a few random paths of the data (or rename a key), as a careless edit would."""
    for _step in range(steps):
        path = draw.draw(st.sampled_from(sorted(paths(value), key=repr)), label="path")
        replacement = draw.draw(data, label="value")
        if not path:
            value = replacement
            continue
        parent = value
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and draw.draw(st.booleans(), label="rename the key"):
            parent[replacement if isinstance(replacement, (str, int, type(None))) else "x"] = parent.pop(path[-1])
        else:
            parent[path[-1]] = replacement
    return value


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
    raw = MANIFEST_FILE
    for _step in range(draw.draw(st.integers(1, 3), label="mutations")):
        at = draw.draw(st.integers(0, len(raw)), label="at")
        kind = draw.draw(st.sampled_from(["insert", "delete", "replace", "duplicate line"]), label="kind")
        if kind == "insert":
            pieces = [b"\n", b": ", b"- ", b"&a ", b"*a", b"[", b"{", b"\t", b"\xff", b"  ", b"probes: x\n"]
            raw = raw[:at] + draw.draw(st.sampled_from(pieces), label="text") + raw[at:]
        elif kind == "delete":
            raw = raw[:at] + raw[at + draw.draw(st.integers(1, 40), label="length"):]
        elif kind == "replace":
            raw = raw[:at] + draw.draw(st.binary(min_size=1, max_size=3), label="bytes") + raw[at + 1:]
        else:
            start = raw.rfind(b"\n", 0, at) + 1
            end = raw.find(b"\n", at)
            line = raw[start:end + 1 if end >= 0 else len(raw)]
            raw = raw[:start] + line + line + raw[start + len(line):]
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
    manifest = mutate(draw, manifest, draw.draw(st.integers(1, 3), label="mutations"))
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
