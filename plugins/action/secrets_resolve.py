# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of edgeops.fleet.secrets_resolve: read each secret from its source, on the controller.

The values never reach the device through this task: they are returned (censored: the result carries
``_ansible_no_log``) for the role to deliver. Values of the ``vault`` source are read from variables by name, so
they are not task arguments either (ansible-runner records task arguments in its events). A failure names the
secret and its source; the source's own reason is kept, scrubbed of every value already read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader

from ansible_collections.edgeops.fleet.plugins.plugin_utils._secrets import (
    SecretsError, aws_value, hashi_vault_value, resolve, validate_definitions, vault_value)

AWS_LOOKUP = "amazon.aws.secretsmanager_secret"
HASHI_VAULT_LOOKUP = "community.hashi_vault.vault_kv2_get"


def _settings(args, key, known):
    """The settings of a source; a misspelt one (``regoin``) would be ignored silently, so it is refused."""
    settings = args.get(key) or {}
    if not isinstance(settings, dict):
        raise SecretsError("%s must be a mapping of settings (%s)" % (key, ", ".join(known)))
    unknown = sorted(str(name) for name in settings if name not in known)
    if unknown:
        raise SecretsError("%s: unknown setting(s) %s (known: %s)" % (key, ", ".join(unknown), ", ".join(known)))
    if not isinstance(settings.get("options") or {}, dict):
        raise SecretsError("%s.options must be a mapping of lookup options" % key)
    return settings


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("definitions", "vault_values_var", "aws", "hashi_vault"))

    def _lookup(self, name, term, task_vars, options):
        plugin = lookup_loader.get(name, loader=self._loader, templar=self._templar)
        if plugin is None:
            raise SecretsError("lookup plugin %s is not installed (collection %s)" % (name, ".".join(name.split(".")[:2])))
        answer = plugin.run([term], task_vars, **dict((k, v) for k, v in options.items() if v not in (None, "")))
        if not answer:
            raise SecretsError("the lookup returned nothing")
        return answer[0]

    def _fetcher(self, task_vars, vault_values_var, aws, hashi_vault):
        def fetch(definition):
            source = definition["source"]
            if source == "vault":
                if "var" in definition:
                    return vault_value(definition, self._templar.resolve_variable_expression(definition["var"]))
                values = self._templar.resolve_variable_expression(vault_values_var) or {}
                if not isinstance(values, dict) or definition["name"] not in values:
                    raise SecretsError("secret %s (source vault): %s has no key %s (set it in an ansible-vault file, "
                                       "or name the variable with var)"
                                       % (definition["name"], vault_values_var, definition["name"]))
                return vault_value(definition, values[definition["name"]])
            if source == "aws":
                options = dict(aws.get("options") or {})
                options.update(region=definition.get("region") or aws.get("region"),
                               endpoint_url=definition.get("endpoint_url") or aws.get("endpoint_url"),
                               version_stage=definition.get("version_stage"))
                return aws_value(definition, self._lookup(AWS_LOOKUP, definition["secret_id"], task_vars, options))
            options = dict(hashi_vault.get("options") or {})
            options.update(url=definition.get("url") or hashi_vault.get("url"),
                           engine_mount_point=definition.get("mount_point") or hashi_vault.get("mount_point"),
                           version=definition.get("version"))
            return hashi_vault_value(definition, self._lookup(HASHI_VAULT_LOOKUP, definition["path"], task_vars, options))
        return fetch

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = self._task.args
        try:
            definitions = validate_definitions(args.get("definitions") or [])
            aws = _settings(args, "aws", ("region", "endpoint_url", "options"))
            hashi_vault = _settings(args, "hashi_vault", ("url", "mount_point", "options"))
            fetch = self._fetcher(task_vars or {}, args.get("vault_values_var") or "secrets_vault_values", aws, hashi_vault)
            values = resolve(definitions, fetch)
        except SecretsError as exc:
            result.update(failed=True, changed=False, msg=str(exc))
            return result
        result.update(changed=False, secrets=values, names=sorted(values),
                      sources=dict((d["name"], d["source"]) for d in definitions))
        # Censored for every callback (screen, logs, ansible-runner events) even if a caller forgot no_log.
        result["_ansible_no_log"] = True
        return result
