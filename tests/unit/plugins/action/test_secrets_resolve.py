# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The secrets_resolve action plugin with STAND-INS for its lookups and templar (the real ones need AWS and Vault;
tests/integration/test_secrets.py runs the real lookups against moto's server and a KV v2 stand-in)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible.errors import AnsibleUndefinedVariable
from ansible.plugins.action import ActionBase

from ansible_collections.edgeops.fleet.plugins.action import secrets_resolve

VALUE = "tok-Qm4Zr8Lx2Wp6"
AWS_VALUE = "key-Hs3Nv7Bc1Kd9"
HASHI_VALUE = "pw-Lk2Mn5Bv8Cx1"


class StandInTemplar(object):
    def __init__(self, variables):
        self.variables = variables

    def resolve_variable_expression(self, name):
        if name not in self.variables:
            raise AnsibleUndefinedVariable("'%s' is undefined" % name)
        return self.variables[name]


class StandInLookup(object):
    def __init__(self, answer, calls):
        self.answer, self.calls = answer, calls

    def run(self, terms, variables=None, **kwargs):
        self.calls.append((terms, kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        return [self.answer]


class Task(object):
    def __init__(self, args):
        self.args = args


@pytest.fixture
def plugin(monkeypatch):
    calls = {"amazon.aws.secretsmanager_secret": [], "community.hashi_vault.vault_kv2_get": []}
    answers = {"amazon.aws.secretsmanager_secret": json.dumps({"api_key": AWS_VALUE}),
               "community.hashi_vault.vault_kv2_get": {"secret": {"password": HASHI_VALUE}}}
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    monkeypatch.setattr(secrets_resolve.lookup_loader, "get",
                        lambda name, loader=None, templar=None: StandInLookup(answers[name], calls[name]))

    def make(args, variables):
        action = object.__new__(secrets_resolve.ActionModule)
        action._task = Task(args)
        action._templar = StandInTemplar(variables)
        action._loader = None
        return action

    make.calls, make.answers = calls, answers
    return make


DEFINITIONS = [
    {"name": "api_token", "var": "vault_api_token"},
    {"name": "model_key"},
    {"name": "model_api", "source": "aws", "secret_id": "edge/model", "json_key": "api_key", "region": "eu-west-1"},
    {"name": "telemetry", "source": "hashi_vault", "path": "edge/t", "field": "password"},
]
VARIABLES = {"vault_api_token": VALUE, "secrets_vault_values": {"model_key": "k-" + VALUE}}


def test_every_source_is_read_and_the_result_is_censored(plugin):
    action = plugin({"definitions": DEFINITIONS, "aws": {"region": "eu-central-1", "endpoint_url": "http://127.0.0.1:1",
                                                         "options": {"profile": "edge"}},
                     "hashi_vault": {"url": "http://127.0.0.1:2", "mount_point": "kv"}}, VARIABLES)
    result = action.run(task_vars={})
    assert result["secrets"] == {"api_token": VALUE, "model_key": "k-" + VALUE, "model_api": AWS_VALUE,
                                 "telemetry": HASHI_VALUE}
    assert result["_ansible_no_log"] is True
    assert result["sources"]["model_api"] == "aws"
    (terms, options), = plugin.calls["amazon.aws.secretsmanager_secret"]
    # The definition's region wins; empty settings are not passed (the lookup's defaults apply).
    assert terms == ["edge/model"]
    assert options == {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:1", "profile": "edge"}
    (terms, options), = plugin.calls["community.hashi_vault.vault_kv2_get"]
    assert terms == ["edge/t"] and options == {"url": "http://127.0.0.1:2", "engine_mount_point": "kv"}


def test_a_failure_names_the_secret_and_source_and_carries_no_value(plugin):
    plugin.answers["amazon.aws.secretsmanager_secret"] = RuntimeError(
        "Failed to retrieve secret edge/model: AccessDenied (request had %s)" % VALUE)
    result = plugin({"definitions": DEFINITIONS}, VARIABLES).run(task_vars={})
    assert result["failed"] is True
    assert result["msg"].startswith("secret model_api (source aws, secret_id edge/model, json_key api_key) could not be "
                                    "read: RuntimeError: Failed to retrieve secret edge/model: AccessDenied")
    assert VALUE not in result["msg"]
    assert "secrets" not in result and "_ansible_no_log" not in result


def test_a_vault_value_missing_from_the_variables_is_named(plugin):
    result = plugin({"definitions": [{"name": "model_key"}]}, {"secrets_vault_values": {}}).run(task_vars={})
    assert result["msg"] == ("secret model_key (source vault): secrets_vault_values has no key model_key (set it in an "
                             "ansible-vault file, or name the variable with var)")
    # var is not named: a templated value that looks like a name ("{{ vault_token }}" written for vault_token)
    # would otherwise be echoed.
    result = plugin({"definitions": [{"name": "api_token", "var": "nope"}]}, {}).run(task_vars={})
    assert result["msg"].startswith("secret api_token (source vault, the variable its var names) could not be read: "
                                    "AnsibleUndefinedVariable")
    assert "nope" not in result["msg"]


def test_bad_definitions_are_refused_before_any_source_is_read(plugin):
    result = plugin({"definitions": [{"name": "a", "source": "aws"}]}, {}).run(task_vars={})
    assert result["msg"] == "secrets_definitions[0] (a).secret_id is required for source aws"
    assert plugin.calls["amazon.aws.secretsmanager_secret"] == []


@pytest.mark.parametrize("args, message", [
    ({"aws": {"regoin": "eu-west-1"}}, "aws: unknown setting(s) regoin (known: region, endpoint_url, options)"),
    ({"hashi_vault": {"url": "http://127.0.0.1:2", "token": "x"}},
     "hashi_vault: unknown setting(s) token (known: url, mount_point, options)"),
    ({"aws": {"options": "profile=edge"}}, "aws.options must be a mapping of lookup options"),
    ({"hashi_vault": ["url"]}, "hashi_vault must be a mapping of settings (url, mount_point, options)"),
])
def test_a_misspelt_source_setting_is_refused_before_any_secret_is_read(plugin, args, message):
    action = plugin(dict({"definitions": DEFINITIONS}, **args), VARIABLES)
    result = action.run(task_vars={})
    assert result["failed"] and result["msg"] == message
    assert plugin.calls == {"amazon.aws.secretsmanager_secret": [], "community.hashi_vault.vault_kv2_get": []}
