# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: release_manifest
short_description: Read a release manifest strictly (bounded, duplicate keys refused, errors naming the file)
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Reads each release manifest (a YAML file on the controller whose document is a mapping) and returns its data,
    as the P(ansible.builtin.file#lookup) lookup followed by the C(from_yaml) filter did, but through the
    collection's strict reader.
  - A relative path is looked up as P(ansible.builtin.file#lookup) looks it up (the role's and the play's C(files/)
    directories, then relative to them). A vault-encrypted file is decrypted first.
  - Refused, with an error that starts with the file's path and names the line, column and key where there is
    one - a missing or unreadable file, a file over 8 MiB (before it is parsed), bytes that are not UTF-8, text
    that is not YAML, a key given twice in one mapping (both lines), collections nested more than 100 deep,
    aliases that expand to more than max(100000, the file's size in bytes) nodes (a "billion laughs" is refused in
    milliseconds), recursive aliases, anchors defined twice, collections as mapping keys, tags other than YAML's
    own (C(!unsafe) and C(!vault) too, as nothing in a manifest is templated anyway), an empty file and a
    document that is not a mapping.
  - Every value read is untrusted for templating - a C({{ }}) in a manifest stays text, it is never rendered.
options:
  _terms:
    description: Paths of release manifests.
    type: list
    elements: path
    required: true
notes:
  - With one path, C(lookup) returns the manifest itself and C(query) a list of one manifest.
seealso:
  - plugin: ansible.builtin.file
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Read the release manifest
  ansible.builtin.set_fact:
    manifest: "{{ lookup('edgeops.fleet.release_manifest', 'releases/demo-1.0.0.yml') }}"

- name: Show the release id
  ansible.builtin.debug:
    msg: "{{ query('edgeops.fleet.release_manifest', release_file) | map(attribute='release') | first }}"
"""

RETURN = r"""
_raw:
  description:
    - One mapping per path, what C(yaml.safe_load) makes of the file (YAML 1.1 scalars, merge keys); every value
      is untrusted for templating.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleError, AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.edgeops.fleet.plugins.plugin_utils._yaml_input import (
    YAMLInputError, read_input, read_yaml_mapping)


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        manifests = []
        for term in terms:
            path = self.find_file_in_search_path(variables or {}, "files", term, ignore_missing=True)
            if not path:
                raise AnsibleLookupError("%s: no such file (a relative path is searched as ansible.builtin.file "
                                         "searches it; -vvvvv lists the paths)" % term)
            try:
                data = read_input(path)
                if data.lstrip().startswith(b"$ANSIBLE_VAULT"):
                    data = self._loader.get_text_file_contents(path).encode("utf-8", "surrogateescape")
                # Plain data without Ansible's trust tag: untrusted, never rendered as a template.
                manifests.append(read_yaml_mapping(data, source=path))
            except YAMLInputError as exc:
                raise AnsibleLookupError(str(exc)) from None  # the message says it all
            except AnsibleError as exc:  # a vaulted file without the vault's secret
                raise AnsibleLookupError("%s: cannot decrypt" % path) from exc
        return manifests
