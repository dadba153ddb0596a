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
import os

import yaml
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.edgeops.fleet.plugins.inventory.fleet import inventory_layout
from ansible_collections.edgeops.fleet.plugins.plugin_utils._fleet import FleetError, assign_waves, load_fleet
from ansible_collections.edgeops.fleet.plugins.plugin_utils._yaml_input import (
    YAMLInputError, expect_mapping, load_yaml)
from conftest import sample_fleet
from fuzzing import data, fuzz_settings, mutate_bytes, mutate_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
with open(os.path.join(REPO, "inventories", "awx", "fleet.yml"), "rb") as _handle:
    FLEET_FILE = _handle.read()

# Few examples, each bounded: the module runs in well under 20 s. No example database (nothing written into the
# checkout); a failure prints the failing example.
FUZZ = fuzz_settings(150)

# Pieces of YAML syntax, so that random text is often almost YAML.
TOKENS = ["\n", "\n  ", "\n    ", " ", "- ", ": ", ":", "? ", "[", "]", "{", "}", ", ", "&a ", "&b ", "*a", "*b",
          "<<: ", "!!int ", "!!str ", "!!set ", "!!omap ", "!!binary ", "!unsafe ", "!vault ", "!x ", "'", '"', "|\n",
          ">\n", "# c", "---\n", "...\n", "%YAML 1.1\n", "~", "null", "true", "yes", "1", "0x1f", "1.5e3", ".nan",
          "2024-06-01", "sites", "devices", "site", "address", "s1", "d1", "10.0.0.1", "\t", "\\", "\x00", "\u00e9",
          "\ufeff"]
yamlish = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


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
    raw = mutate_bytes(draw, FLEET_FILE, yamlish.map(lambda text: text.encode("utf-8")))
    read_and_validate(raw)


@FUZZ
@given(st.data())
def test_mutations_of_valid_fleet_data(draw):
    fleet = yaml.safe_load(FLEET_FILE) if draw.draw(st.booleans(), label="awx example") else sample_fleet(2, 2)
    fleet = mutate_data(draw, fleet)
    before = copy.deepcopy(fleet)
    try:
        loaded = load_fleet(fleet, source="fleet.yml")
    except FleetError as exc:
        assert str(exc).startswith("fleet.yml: "), str(exc)
        return
    finally:
        assert fleet == before  # the validator never changes what it is given
    inventory_layout(loaded, assign_waves(loaded))
