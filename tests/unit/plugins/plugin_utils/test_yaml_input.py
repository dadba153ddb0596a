# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The YAML reader for input the controller did not write (plugins/plugin_utils/_yaml_input.py).

Property-based fuzzing of it and of the fleet file validator: test_fleet_input_fuzz.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
import tracemalloc

import pytest
import yaml

from ansible_collections.edgeops.fleet.plugins.plugin_utils import _yaml_input
from ansible_collections.edgeops.fleet.plugins.plugin_utils._yaml_input import (
    MAX_BYTES, MAX_DEPTH, YAMLInputError, load_yaml, read_input, read_yaml_mapping)


def billion_laughs(levels=10):
    """Ten levels of nine aliases each: 9**9 strings if expanded (a few hundred bytes of YAML)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append("l%d: &l%d [%s]" % (level, level, ", ".join(["*l%d" % (level - 1)] * 9)))
    return ("\n".join(lines) + "\n").encode("ascii")


# What yaml.safe_load reads the same way (the reader replaces it for fleet files and manifests).
SAME_AS_SAFE_LOAD = [
    "a: 1\nb: [x, 'y', \"z\", 1.5, 0x1F, 0o17, 017, 1_000, -3, .inf, yes, No, ~, null, '', true, '1']\n",
    "base: &b {port: 22, tags: [a]}\none: *b\ntwo:\n  <<: *b\n  port: 23\n",  # anchors, merge key
    "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n",  # earlier merges win, own keys win
    "when: 2024-06-01\nat: 2024-06-01 10:00:00\n",  # timestamps
    "- &x [1, 2]\n- *x\n",
    "{\"json\": [1, 2, {\"k\": null}]}\n",
    "set: !!set {a, b}\nbin: !!binary aGVsbG8=\nomap: !!omap [a: 1, b: 2]\npairs: !!pairs [a: 1, a: 2]\n",
    "s: !!str 12\nf: !!float 1\ni: !!int '7'\nn: !!null ''\nb: !!bool 'true'\nq: ! 12\n",
    "\ufeffkey: value\n",  # a UTF-8 byte order mark
    "---\n- 1\n...\n",
]


@pytest.mark.parametrize("text", SAME_AS_SAFE_LOAD)
def test_reads_what_safe_load_reads(text):
    value, foreign = load_yaml(text.encode("utf-8"), "f.yml")
    assert value == yaml.safe_load(text) and foreign is False


def test_aliases_are_copies_that_share_nothing():
    value, _foreign = load_yaml(b"a: &a {k: [1]}\nb: *a\nc: {<<: *a}\n", "f.yml")
    assert value["a"] == value["b"] == value["c"] == {"k": [1]}
    assert value["a"] is not value["b"] and value["a"]["k"] is not value["b"]["k"]
    assert value["c"]["k"] is not value["a"]["k"]


@pytest.mark.parametrize("data, value", [(b"", None), (b"# only a comment\n", None), (b"---\n", None)])
def test_empty_input_is_none_and_not_a_mapping(data, value):
    assert load_yaml(data, "f.yml") == (value, False)
    with pytest.raises(YAMLInputError) as err:
        read_yaml_mapping(data, "manifest.yml")
    assert str(err.value) == "manifest.yml: empty, expected a mapping"


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "manifest.yml: expected a mapping at the top of the document, got a list"),
    ("just text\n", "manifest.yml: expected a mapping at the top of the document, got a string"),
    ("12\n", "manifest.yml: expected a mapping at the top of the document, got an integer"),
])
def test_a_document_that_is_not_a_mapping_says_what_it_is(text, message):
    with pytest.raises(YAMLInputError) as err:
        read_yaml_mapping(text.encode("utf-8"), "manifest.yml")
    assert str(err.value) == message


@pytest.mark.parametrize("text, message", [
    # the key, both lines, and where the mapping is
    ("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n",
     "f.yml: line 5 column 3 (in b): the key 'c' is given twice, at line 3 and line 5"),
    ("devices:\n  d1:\n    address: 10.0.0.1\n    tags: [a]\n    address: 10.0.0.2\n",
     "f.yml: line 5 column 5 (in devices.d1): the key 'address' is given twice, at line 3 and line 5"),
    ("- x: 1\n- {y: 1, y: 2}\n", "f.yml: line 2 column 10 (in [1]): the key 'y' is given twice, at line 2 and line 2"),
    ("top: 1\ntop: 2\n", "f.yml: line 2 column 1: the key 'top' is given twice, at line 1 and line 2"),
    ("1: a\ntrue: b\n", "the key True is given twice, at line 1 and line 2"),  # equal as Python keys
    ("m:\n  <<: {a: 1}\n  <<: {b: 1}\n", "f.yml: line 3 column 3 (in m): the key '<<' is given twice, at line 2 and"),
])
def test_a_duplicate_key_is_refused_naming_both_lines(text, message):
    with pytest.raises(YAMLInputError) as err:
        load_yaml(text.encode("utf-8"), "f.yml")
    assert message in str(err.value), str(err.value)
    assert yaml.safe_load(text) is not None  # what safe_load silently took


def test_a_merged_key_may_be_overridden():
    assert load_yaml(b"d: &d {a: 1}\nm: {<<: *d, a: 2}\n", "f.yml")[0]["m"] == {"a": 2}


@pytest.mark.parametrize("text, message", [
    ("a: [1\n", "f.yml: line 2 column 1: not valid YAML: did not find expected ',' or ']'"),
    ("a: b: c\n", "f.yml: line 1 column 5: not valid YAML: mapping values are not allowed"),
    ("a:\n  - 1\n b: 2\n", "f.yml: line 3 column 2: not valid YAML:"),
    ("a: 'open\n", "f.yml: line 2 column 1: not valid YAML: found unexpected end of stream"),
    ("k: \x00\n", "f.yml: byte offset 3 (line 1): not valid YAML: control characters are not allowed"),
    ("a: 1\n---\nb: 2\n", "f.yml: line 2 column 1: expected one document, found another one"),
    ("a: *nope\n", "f.yml: line 1 column 4 (at a): the alias *nope refers to no anchor defined before it"),
    ("a: &r\n  self: *r\n", "f.yml: line 2 column 9 (at a.self): the alias *r refers to the collection it is in"),
    ("a: &x 1\nb: &x 2\n", "f.yml: line 2 column 4 (at b): the anchor &x is defined twice"),
    ("? [1, 2]\n: v\n", "f.yml: line 1 column 3: expected a scalar as a mapping key, got a list"),
    ("a: &l [1]\n*l : v\n", "expected a scalar as a mapping key, got a list (an alias of a collection)"),
    ("p: !!python/object:os.system x\n",
     "f.yml: line 1 column 4 (at p): the tag !!python/object:os.system is not allowed"),
    ("x: !unsafe '{{ a }}'\n", "f.yml: line 1 column 4 (at x): the tag !unsafe is not allowed (plain data only)"),
    ("l: !custom [1]\n", "f.yml: line 1 column 4 (at l): the tag !custom is not allowed on a list"),
    ("a: !!int abc\n", "f.yml: line 1 column 4 (at a): expected an integer (!!int), got 'abc'"),
    ("a: !!bool maybe\n", "f.yml: line 1 column 4 (at a): expected true or false (!!bool), got 'maybe'"),
    ("a: [x, !!timestamp nope]\n", "f.yml: line 1 column 8 (at a[1]): expected a timestamp (!!timestamp)"),
    ("a: !!binary 'a'\n", "f.yml: line 1 column 4 (at a): expected base64 data (!!binary)"),
    ("m: {<<: [1]}\n", "f.yml: line 1 column 4 (at m): <<: expected a mapping or a list of mappings to merge, got an"),
    ("o: !!omap [1]\n", "f.yml: line 1 column 4 (at o): !!omap: expected a list of one-key mappings, got an integer"),
    ("n: %s\n" % ("9" * 5000), "f.yml: line 1 column 4 (at n): expected an integer (!!int)"),
])
def test_bad_yaml_is_refused_naming_file_line_column_and_key(text, message):
    with pytest.raises(YAMLInputError) as err:
        load_yaml(text.encode("utf-8"), "f.yml")
    assert str(err.value).startswith(message) or message in str(err.value), str(err.value)


def test_non_utf8_names_the_byte_offset_and_line():
    with pytest.raises(YAMLInputError) as err:
        load_yaml(b"a: 1\nb: caf\xe9\n", "f.yml")
    assert str(err.value) == "f.yml: not UTF-8: byte 0xe9 at byte offset 11 (line 2)"
    with pytest.raises(YAMLInputError) as err:
        load_yaml(b"\xff\xfea\x00:\x00", "f.yml")  # UTF-16 is refused too
    assert str(err.value).startswith("f.yml: not UTF-8: byte 0xff at byte offset 0 (line 1)")


def test_a_billion_laughs_is_refused_quickly_in_little_memory():
    bomb = billion_laughs()
    tracemalloc.start()
    try:
        start = time.process_time()
        with pytest.raises(YAMLInputError) as err:
            load_yaml(bomb, "bomb.yml")
        elapsed = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "aliases expand to more than 100000 nodes" in str(err.value) and str(err.value).startswith("bomb.yml: line ")
    assert elapsed < 0.5, elapsed
    assert peak < 8 * 1024 * 1024, peak


def test_merge_keys_count_against_the_alias_budget():
    lines = ["d0: &d0 {%s}" % ", ".join("k%d: %d" % (i, i) for i in range(9))]
    for level in range(1, 8):
        lines.append("d%d: &d%d {%s}" % (level, level, ", ".join("k%d: {<<: *d%d}" % (i, level - 1) for i in range(9))))
    with pytest.raises(YAMLInputError) as err:
        load_yaml(("\n".join(lines) + "\n").encode("ascii"), "f.yml")
    assert "aliases expand to more than" in str(err.value)


def test_many_merges_of_a_small_anchor_fit_the_budget():
    """A fleet that gives each of 10,000 devices the same settings through a merge key."""
    text = "defaults: &d {site: s1, profile: p, tags: [a, b], port: 22}\ndevices:\n" + "".join(
        "  dev%05d: {<<: *d, address: 10.0.%d.%d}\n" % (n, n // 250, n % 250) for n in range(10000))
    value, _foreign = load_yaml(text.encode("ascii"), "f.yml")
    assert len(value["devices"]) == 10000 and value["devices"]["dev09999"]["tags"] == ["a", "b"]


def test_deep_nesting_is_refused_without_crashing_the_process():
    """PyYAML's C composer (the reader before) recurses per level: 100,000 levels crashed Python (SIGSEGV)."""
    deep = b"[" * 100000 + b"]" * 100000
    with pytest.raises(YAMLInputError) as err:
        load_yaml(deep, "deep.yml")
    assert "collections nested more than %d deep" % MAX_DEPTH in str(err.value)
    assert str(err.value).startswith("deep.yml: line 1 column %d (at [0][0][0][0][0]...[0][0][0][0]): "
                                     % (MAX_DEPTH + 1))
    ok = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert load_yaml(ok, "f.yml")[0] is not None


def test_deep_nesting_through_aliases_is_refused():
    half = MAX_DEPTH // 2 + 1
    text = "a: &a %s1%s\nb: %s*a%s\n" % ("[" * half, "]" * half, "[" * half, "]" * half)
    with pytest.raises(YAMLInputError) as err:
        load_yaml(text.encode("ascii"), "f.yml")
    assert "nested more than %d deep (through the alias *a)" % MAX_DEPTH in str(err.value)


def test_foreign_tags_are_read_untagged_and_reported():
    text = b"secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3031\nraw: !unsafe '{{ x }}'\nplain: 1\n"
    value, foreign = load_yaml(text, "f.yml", foreign_tags=("!vault", "!unsafe"))
    assert foreign is True and value["raw"] == "{{ x }}" and value["plain"] == 1
    assert load_yaml(b"plain: 1\n", "f.yml", foreign_tags=("!vault",)) == ({"plain": 1}, False)


def test_size_is_refused_before_parsing(tmp_path, monkeypatch):
    big = tmp_path / "big.yml"
    big.write_bytes(b"a: 1\n" + b"#" * MAX_BYTES)
    with pytest.raises(YAMLInputError) as err:
        read_yaml_mapping(str(big))
    assert str(err.value) == "%s: %d bytes, more than the limit of %d" % (big, MAX_BYTES + 5, MAX_BYTES)
    with pytest.raises(YAMLInputError) as err:
        load_yaml(big.read_bytes(), "big.yml")
    assert "more than the limit" in str(err.value)

    def no_parsing(*_args):
        raise AssertionError("parsed")

    monkeypatch.setattr(_yaml_input, "_build", no_parsing)
    with pytest.raises(YAMLInputError):
        read_yaml_mapping(str(big))


def test_read_yaml_mapping_takes_a_path_or_bytes(tmp_path):
    manifest = tmp_path / "demo-1.0.0.yml"
    manifest.write_text("release: demo-1.0.0\nworkloads:\n  - name: web\n")
    assert read_yaml_mapping(str(manifest)) == {"release": "demo-1.0.0", "workloads": [{"name": "web"}]}
    assert read_yaml_mapping(manifest.read_bytes(), "x.yml") == read_yaml_mapping(manifest)
    with pytest.raises(YAMLInputError) as err:
        read_yaml_mapping(str(tmp_path / "missing.yml"))
    assert str(err.value).startswith("%s: cannot read: " % (tmp_path / "missing.yml"))
    assert read_input(str(manifest)) == manifest.read_bytes()
