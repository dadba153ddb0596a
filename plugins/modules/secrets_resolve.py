#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: secrets_resolve
short_description: Read the workloads' secrets from ansible-vault, AWS Secrets Manager or HashiCorp Vault, on the controller
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Runs on the controller only (an action plugin); nothing is sent to the host.
  - Each definition names a secret (the file name under C(/run/edgeops/secrets)) and its source.
    C(vault) (default) reads a variable, typically from an ansible-vault encrypted file; C(aws) reads AWS Secrets
    Manager through the C(amazon.aws.secretsmanager_secret) lookup; C(hashi_vault) reads a field of a KV v2 secret
    through the C(community.hashi_vault.vault_kv2_get) lookup.
  - The result is censored for every callback (it carries C(_ansible_no_log)); still run it with C(no_log=true),
    register it, and read RV(secrets) from the registered variable.
  - A failure names the secret and its source (secret id, path and field) and keeps the source's reason, scrubbed of
    every value already read; never a value.
options:
  definitions:
    description:
      - The secrets. Keys C(name) (required; 1-63 lowercase letters, digits, C(-), C(_)) and C(source) (C(vault),
        C(aws), C(hashi_vault); default C(vault)), then per source
      - C(vault) - C(var), the variable that holds the value (default the key C(name) of the variable named by
        O(vault_values_var)).
      - C(aws) - C(secret_id) (required), C(json_key) (the SecretString is JSON, take this key), C(version_stage)
        (such as C(AWSPENDING) while a rotation is staged), C(region), C(endpoint_url).
      - C(hashi_vault) - C(path) and C(field) (required), C(mount_point), C(url), C(version).
      - Unknown keys are refused, naming the definition.
    type: list
    elements: dict
    required: true
  vault_values_var:
    description: Name of the variable (a mapping of secret name to value) that C(vault) definitions without C(var) read.
    type: str
    default: secrets_vault_values
  aws:
    description:
      - Settings of the C(aws) source that definitions do not override - C(region), C(endpoint_url) and C(options)
        (further options of the lookup, such as C(profile); credentials best come from the environment or a profile).
      - Other keys are refused, naming them.
    type: dict
    default: {}
  hashi_vault:
    description:
      - Settings of the C(hashi_vault) source - C(url), C(mount_point) (default of the lookup C(secret)) and C(options)
        (further options of the lookup, such as C(auth_method), C(role_id), C(token_path)).
      - Other keys are refused, naming them.
    type: dict
    default: {}
attributes:
  action:
    support: full
    description: All the work is done by the action plugin, on the controller.
  check_mode:
    support: full
    description: Only reads; runs in check mode too.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller.
requirements:
  - boto3 and botocore on the controller for the C(aws) source.
  - hvac on the controller for the C(hashi_vault) source.
notes:
  - The lookups run once per host of the play; a value that is the same for all hosts is read once per host.
seealso:
  - plugin: amazon.aws.secretsmanager_secret
    plugin_type: lookup
  - plugin: community.hashi_vault.vault_kv2_get
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Read the secrets (censored; a failure names the secret and source)
  edgeops.fleet.secrets_resolve:
    definitions:
      - {name: dashboard_token, var: vault_dashboard_token}
      - {name: model_api_key, source: aws, secret_id: edge/site01/model-api, json_key: api_key}
      - {name: telemetry_password, source: hashi_vault, path: edge/telemetry, field: password}
    aws: {region: eu-central-1}
    hashi_vault: {url: "https://vault.example:8200", options: {auth_method: approle, role_id: edge}}
  register: resolved
  no_log: true
  failed_when: false

- name: Say which secret could not be read
  ansible.builtin.fail:
    msg: "{{ resolved.msg }}"
  when: resolved.failed | default(false)
"""

RETURN = r"""
secrets:
  description: Secret name to value. Censored in every output; read it from the registered variable.
  returned: success
  type: dict
names:
  description: The names of the secrets read.
  returned: success
  type: list
  elements: str
sources:
  description: Secret name to its source.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    # Only reached when the action plugin is bypassed (a host without the collection's action plugins).
    module = AnsibleModule(argument_spec=dict(
        definitions=dict(type="list", elements="dict", required=True),
        vault_values_var=dict(type="str", default="secrets_vault_values"),
        aws=dict(type="dict", default={}),
        hashi_vault=dict(type="dict", default={}),
    ), supports_check_mode=True)
    module.fail_json(msg="edgeops.fleet.secrets_resolve runs on the controller through its action plugin")


if __name__ == "__main__":
    main()
