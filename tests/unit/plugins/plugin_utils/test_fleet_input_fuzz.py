# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based fuzzing of the YAML reader (_yaml_input) and the fleet file validator (_fleet).

Whatever the input - random bytes, YAML-ish text, random data dumped as YAML, mutations of a valid fleet file or
of its data - reading and validating it ends in a result or in the reader's or validator's own error
(YAMLInputError, FleetError), never another exception, and within the deadline. With CI=true the examples are
derandomized (the same examples every run).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.edgeops.fleet.plugins.inventory.fleet import inventory_layout
from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import FleetError, assign_waves, load_fleet
from ansible_collections.edgeops.fleet.plugins.plugin_utils._yaml_input import (
    YAMLInputError, expect_mapping, load_yaml)
from conftest import in_ci, sample_fleet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
with open(os.path.join(REPO, "inventories", "awx", "fleet.yml"), "rb") as _handle:
    FLEET_FILE = _handle.read()

# Few examples, each bounded: the module runs in well under 20 s. No example database (nothing written into the
# checkout); a failure prints the failing example.
FUZZ = settings(max_examples=150, deadline=datetime.timedelta(seconds=2), derandomize=in_ci(), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Pieces of YAML syntax, so that random text is often almost YAML.
TOKENS = ["\n", "\n  ", "\n    ", " ", "- ", ": ", ":", "? ", "[", "]", "{", "}", ", ", "&a ", "&b ", "*a", "*b",
          "<<: ", "!!int ", "!!str ", "!!set ", "!!omap ", "!!binary ", "!unsafe ", "!vault ", "!x ", "'", '"', "|\n",
          ">\n", "# c", "---\n", "...\n", "%YAML 1.1\n", "~", "null", "true", "yes", "1", "0x1f", "1.5e3", ".nan",
          "2024-06-01", "sites", "devices", "site", "address", "s1", "d1", "10.0.0.1", "\t", "\\", "\x00", "\u00e9",
          "\ufeff"]
yamlish = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                    st.dates())
keys = st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none())
data = st.recursive(
    scalars, lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=5)),
    max_leaves=30)


def read_and_validate(raw):
    """The inventory plugin's path for a plain fleet file: read, validate, waves, layout."""
    try:
        value, _foreign = load_yaml(raw, "fleet.yml", foreign_tags=("!vault", "!unsafe"))
        fleet = load_fleet(expect_mapping(value, "fleet.yml", empty=True), source="fleet.yml")
    except (YAMLInputError, FleetError) as exc:
        assert str(exc).startswith("fleet.yml: "), str(exc)
        return None
    return inventory_layout(fleet, assign_waves(fleet))


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(raw):
    read_and_validate(raw)


@FUZZ
@given(yamlish)
def test_yamlish_text(text):
    read_and_validate(text.encode("utf-8"))


@FUZZ
@given(data)
def test_random_data_dumped_as_yaml_reads_back_the_same(value):
    text = yaml.safe_dump(value)
    assert load_yaml(text.encode("utf-8"), "x.yml")[0] == yaml.safe_load(text) == value
    read_and_validate(text.encode("utf-8"))


@FUZZ
@given(st.data())
def test_mutations_of_a_valid_fleet_file(draw):
    raw = FLEET_FILE
    for _step in range(draw.draw(st.integers(1, 4), label="mutations")):
        at = draw.draw(st.integers(0, len(raw)), label="at")
        kind = draw.draw(st.sampled_from(["insert", "delete", "replace", "duplicate line"]), label="kind")
        if kind == "insert":
            raw = raw[:at] + draw.draw(yamlish, label="text").encode("utf-8") + raw[at:]
        elif kind == "delete":
            raw = raw[:at] + raw[at + draw.draw(st.integers(1, 40), label="length"):]
        elif kind == "replace":
            raw = raw[:at] + draw.draw(st.binary(min_size=1, max_size=3), label="bytes") + raw[at + 1:]
        else:
            start = raw.rfind(b"\n", 0, at) + 1
            end = raw.find(b"\n", at)
            line = raw[start:end + 1 if end >= 0 else len(raw)]
            raw = raw[:start] + line + line + raw[start + len(line):]
    read_and_validate(raw)


def paths(value, prefix=()):
    """Every path to a value inside the data: keys of mappings, indexes of lists."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, prefix + (index,))


@FUZZ
@given(st.data())
def test_mutations_of_valid_fleet_data(draw):
    fleet = yaml.safe_load(FLEET_FILE) if draw.draw(st.booleans(), label="awx example") else sample_fleet(2, 2)
    for _step in range(draw.draw(st.integers(1, 3), label="mutations")):
        path = draw.draw(st.sampled_from(sorted(paths(fleet), key=repr)), label="path")
        replacement = draw.draw(data, label="value")
        if not path:
            fleet = replacement
            continue
        parent = fleet
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and draw.draw(st.booleans(), label="rename the key"):
            parent[replacement if isinstance(replacement, (str, int, type(None))) else "x"] = parent.pop(path[-1])
        else:
            parent[path[-1]] = replacement
    before = copy.deepcopy(fleet)
    try:
        loaded = load_fleet(fleet, source="fleet.yml")
    except FleetError as exc:
        assert str(exc).startswith("fleet.yml: "), str(exc)
        return
    finally:
        assert fleet == before  # the validator never changes what it is given
    inventory_layout(loaded, assign_waves(loaded))
