# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release manifest lookup (plugins/lookup/release_manifest.py) on real files, with Ansible's DataLoader.

The reader itself (every refusal, its limits): tests/unit/plugins/plugin_utils/test_yaml_input.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

import pytest
import yaml
from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret
from ansible.template import Templar, is_trusted_as_template, trust_as_template

from ansible_collections.edgeops.fleet.plugins.lookup.release_manifest import LookupModule

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
MANIFEST = ("release: demo-1.0.0\nvolumes: [models]\nworkloads:\n  predictor:\n    image: edgeops/predictor\n"
            "    cpus: 1.0\n    memory: 192m\n    ports: [\"127.0.0.1:8080:8080\"]\n")


def run(*terms, **options):
    """The lookup's result, as Ansible calls it (a DataLoader; ``variables`` as a task has them)."""
    loader = options.pop("loader", None) or DataLoader()
    variables = options.pop("variables", {})
    return LookupModule(loader=loader).run(list(terms), variables=variables, **options)


def refused(path):
    with pytest.raises(AnsibleLookupError) as err:
        run(str(path))
    return str(err.value)


def billion_laughs():
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += ["l%d: &l%d [%s]" % (n, n, ", ".join(["*l%d" % (n - 1)] * 9)) for n in range(1, 10)]
    return "\n".join(lines) + "\n"


def test_a_manifest_reads_as_safe_load_reads_it(tmp_path):
    path = tmp_path / "demo-1.0.0.yml"
    path.write_text(MANIFEST)
    assert run(str(path)) == [yaml.safe_load(MANIFEST)]
    other = tmp_path / "other.yml"
    other.write_text("release: other\nbase: &b {a: 1}\nmerged: {<<: *b, c: 2}\n")
    expected_other = {"release": "other", "base": {"a": 1}, "merged": {"a": 1, "c": 2}}
    assert run(str(path), str(other)) == [yaml.safe_load(MANIFEST), expected_other]


def test_the_sample_manifests_read_as_before():
    releases = os.path.join(REPO, "samples", "releases")
    for name in sorted(os.listdir(releases)):
        with open(os.path.join(releases, name), "rb") as handle:
            assert run(os.path.join(releases, name)) == [yaml.safe_load(handle)], name


def test_a_relative_path_is_found_where_ansible_builtin_file_finds_it(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "demo.yml").write_text(MANIFEST)
    loader = DataLoader()
    loader.set_basedir(str(tmp_path))
    assert run("demo.yml", loader=loader, variables={"ansible_search_path": [str(tmp_path)]}) == [
        yaml.safe_load(MANIFEST)]


@pytest.mark.parametrize("content, reason", [
    (MANIFEST + "release: demo-1.0.1\n",
     ": line 9 column 1: the key 'release' is given twice, at line 1 and line 9"),
    (MANIFEST.replace("    memory: 192m\n", "    memory: 192m\n    memory: 1g\n"),
     ": line 8 column 5 (in workloads.predictor): the key 'memory' is given twice, at line 7 and line 8"),
    ("", ": empty, expected a mapping"),
    ("- release: demo-1.0.0\n", ": expected a mapping at the top of the document, got a list"),
    (b"release: caf\xe9\n", ": not UTF-8: byte 0xe9 at byte offset 12 (line 1)"),
    ("release: [demo\n", ": line 2 column 1: not valid YAML: did not find expected ',' or ']'"),
    ("release: !unsafe '{{ x }}'\n", ": line 1 column 10 (at release): the tag !unsafe is not allowed"),
])
def test_bad_input_is_refused_naming_the_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.yml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    message = refused(path)
    assert message.startswith(str(path) + reason), message


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yml"
    path.write_text(billion_laughs())
    start = time.process_time()
    message = refused(path)
    elapsed = time.process_time() - start
    assert message.startswith("%s: line " % path) and "aliases expand to more than 100000 nodes" in message, message
    assert elapsed < 0.5, elapsed


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "missing.yml"
    assert refused(path).startswith("%s: no such file" % path)
    (tmp_path / "dir.yml").mkdir()
    assert refused(tmp_path / "dir.yml").startswith("%s: cannot read: " % (tmp_path / "dir.yml"))


def test_a_vaulted_manifest_is_decrypted_then_checked(tmp_path):
    path = tmp_path / "vaulted.yml"
    vault = VaultLib([("default", VaultSecret(b"pw"))])
    path.write_bytes(vault.encrypt(MANIFEST))
    loader = DataLoader()
    loader.set_vault_secrets([("default", VaultSecret(b"pw"))])
    assert run(str(path), loader=loader) == [yaml.safe_load(MANIFEST)]
    assert refused(path).startswith("%s: cannot decrypt" % path)  # no vault secret
    path.write_bytes(vault.encrypt(MANIFEST + "release: again\n"))
    with pytest.raises(AnsibleLookupError) as err:
        run(str(path), loader=loader)
    assert str(err.value).startswith("%s: line 9 column 1: the key 'release' is given twice" % path)


def test_a_template_in_a_manifest_stays_text(tmp_path):
    """Nothing read from a manifest is trusted: a task that uses the value gets the text, nothing runs."""
    path = tmp_path / "evil.yml"
    path.write_text("release: r1\nworkloads:\n  w:\n    command: \"{{ lookup('pipe', 'id') }}\"\n")
    manifest = run(str(path))[0]
    command = manifest["workloads"]["w"]["command"]
    assert command == "{{ lookup('pipe', 'id') }}" and not is_trusted_as_template(command)
    templar = Templar(loader=DataLoader(),
                      variables={"manifest": manifest, "trusted": trust_as_template("{{ 6 * 7 }}")})
    assert templar.template(trust_as_template("{{ manifest.workloads.w.command }}")) == command
    assert templar.template(trust_as_template("{{ manifest }}")) == manifest
    assert templar.template(trust_as_template("{{ trusted }}")) == 42  # the same templar does render trusted text
