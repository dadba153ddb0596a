# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""extensions/awx/ (infra.aap_configuration's data format) checked without an AWX: every object against the
argument spec of the awx.awx module that would create it (taken from the module itself, as installed with the
ansible package), and every name it refers to - projects, inventories, credentials, templates, playbooks, workflow
nodes, the variables surveys and injectors set - against what exists."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import importlib
import os
import re
from unittest import mock

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.yaml.loader import AnsibleLoader

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
AWX = os.path.join(REPO, "extensions", "awx")

# infra.aap_configuration's variable -> the awx.awx module its role calls for each item.
MODULES = {
    "controller_projects": "project",
    "controller_execution_environments": "execution_environment",
    "controller_credential_types": "credential_type",
    "controller_credentials": "credential",
    "controller_inventories": "inventory",
    "controller_inventory_sources": "inventory_source",
    "controller_notifications": "notification_template",
    "controller_templates": "job_template",
    "controller_workflows": "workflow_job_template",
}
# Keys of infra.aap_configuration's format that its role turns into calls of another module.
INFRA_ONLY = {"controller_workflows": ("simplified_workflow_nodes",)}
# What every AWX has, so the content may name it without defining it.
BUILTIN = {"organization": {"Default"}, "credential_type": {"Machine"}}
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


def load_content():
    content = {}
    for path in sorted(glob.glob(os.path.join(AWX, "*.yml"))):
        with open(path) as handle:
            data = yaml.load(handle, Loader=AnsibleLoader)  # noqa: S506 (Ansible's loader: !unsafe, no objects)
        assert isinstance(data, dict), path
        for key, items in data.items():
            assert key in MODULES, "%s: %s is not a variable of infra.aap_configuration that we use" % (path, key)
            assert key not in content, "%s: %s is also defined in another file" % (path, key)
            content[key] = items
    return content


CONTENT = load_content()


class _Captured(Exception):
    pass


def module_spec(name):
    """The arguments an awx.awx module builds its ControllerAPIModule with (argument_spec, mutually_exclusive, ...)."""
    module = importlib.import_module("ansible_collections.awx.awx.plugins.modules." + name)
    captured = {}

    def capture(*args, **kwargs):
        captured.update(kwargs)
        raise _Captured()

    with mock.patch.object(module, "ControllerAPIModule", capture):
        with pytest.raises(_Captured):
            module.main()
    return captured


def validate(module_name, params, where):
    spec = module_spec(module_name)
    validator = ArgumentSpecValidator(
        spec["argument_spec"], mutually_exclusive=spec.get("mutually_exclusive"),
        required_together=spec.get("required_together"), required_one_of=spec.get("required_one_of"),
        required_if=spec.get("required_if"), required_by=spec.get("required_by"))
    result = validator.validate(params)
    assert not result.error_messages, "%s (awx.awx.%s): %s" % (where, module_name, result.error_messages)


def objects():
    for key, items in CONTENT.items():
        for item in items:
            yield key, item


def names(key):
    return {item["name"] for item in CONTENT.get(key, [])}


@pytest.mark.parametrize("key, item", list(objects()), ids=["%s:%s" % (k, i["name"]) for k, i in objects()])
def test_every_object_is_valid_for_the_awx_module_that_creates_it(key, item):
    params = {k: v for k, v in item.items() if k not in INFRA_ONLY.get(key, ())}
    validate(MODULES[key], params, "%s %s" % (key, item["name"]))


def test_every_workflow_node_is_valid_and_every_node_is_reached_from_the_first():
    for workflow in CONTENT["controller_workflows"]:
        nodes = workflow["simplified_workflow_nodes"]
        identifiers = [node["identifier"] for node in nodes]
        assert len(set(identifiers)) == len(identifiers), workflow["name"]
        for node in nodes:
            params = dict(node, workflow_job_template=workflow["name"], organization=workflow["organization"])
            validate("workflow_job_template_node", params, "%s node %s" % (workflow["name"], node["identifier"]))
            for edge in ("success_nodes", "failure_nodes", "always_nodes"):
                missing = set(node.get(edge, [])) - set(identifiers)
                assert not missing, "%s node %s: %s names no node: %s" % (workflow["name"], node["identifier"], edge, missing)
            if "unified_job_template" in node:
                assert node["unified_job_template"] in names("controller_templates"), node
        reached, todo = set(), [identifiers[0]]
        while todo:
            current = todo.pop()
            if current not in reached:
                reached.add(current)
                node = nodes[identifiers.index(current)]
                todo.extend(node.get("success_nodes", []) + node.get("failure_nodes", []) + node.get("always_nodes", []))
        assert reached == set(identifiers), "%s: not reached from %s: %s" % (workflow["name"], identifiers[0],
                                                                             set(identifiers) - reached)


def test_the_rollout_workflow_checks_then_waits_for_an_approval_then_rolls_out_with_it():
    workflow = {w["name"]: w for w in CONTENT["controller_workflows"]}["edgeops.fleet rollout with approval"]
    nodes = {n["identifier"]: n for n in workflow["simplified_workflow_nodes"]}
    templates = {t["name"]: t for t in CONTENT["controller_templates"]}
    playbook = {i: templates[n["unified_job_template"]]["playbook"] for i, n in nodes.items() if "unified_job_template" in n}
    assert playbook["check"] == "playbooks/rollout_check.yml"
    assert "approval_node" in nodes[nodes["check"]["success_nodes"][0]]
    after_approval = nodes[nodes["check"]["success_nodes"][0]]["success_nodes"]
    assert [playbook[i] for i in after_approval] == ["playbooks/rollout.yml"]
    # The approval node is the rollout's approval, which only AWX can vouch for: the template takes no extra variables.
    rollout = templates[nodes[after_approval[0]]["unified_job_template"]]
    assert rollout["extra_vars"]["rollout_approval_from"] == "awx_workflow"
    assert rollout.get("ask_variables_on_launch", False) is False
    assert {q["variable"] for q in rollout["survey_spec"]["spec"]} <= {"rollout_release_file", "rollout_targets", "rollout_id"}
    # After a failed check or rollout only the alert runs: the rollout rolled back what it switched itself; a rollback
    # node would also run after a failure before the rollout began, and roll back an earlier rollout of the same id.
    for node in ("check", after_approval[0]):
        assert [playbook[i] for i in nodes[node]["failure_nodes"]] == ["playbooks/rollout_alert.yml"], node
    assert not any(nodes[after_approval[0]].get(edge) for edge in ("success_nodes", "always_nodes"))
    alert = templates[nodes[nodes["check"]["failure_nodes"][0]]["unified_job_template"]]
    assert alert["credentials"] == ["edgeops.fleet Alertmanager"] and alert["ask_variables_on_launch"] is False
    assert workflow["allow_simultaneous"] is False


def test_a_stale_lock_can_be_broken_from_awx_and_only_through_the_templates_that_roll_out():
    templates = {t["name"]: t for t in CONTENT["controller_templates"]}
    breaking = sorted(name for name, t in templates.items()
                      if "rollout_break_lock" in {q["variable"] for q in t.get("survey_spec", {}).get("spec", [])})
    assert breaking == ["edgeops.fleet rollout", "edgeops.fleet rollout rollback"]


def test_every_name_an_object_refers_to_exists():
    refs = [("project", "controller_projects"), ("source_project", "controller_projects"),
            ("inventory", "controller_inventories"), ("execution_environment", "controller_execution_environments"),
            ("default_environment", "controller_execution_environments"),
            ("credential_type", "controller_credential_types"), ("organization", None)]
    for key, item in objects():
        where = "%s %s" % (key, item["name"])
        for field, target in refs:
            if field in item:
                known = (names(target) if target else set()) | BUILTIN.get(field, set())
                assert item[field] in known, "%s: %s %r is not defined" % (where, field, item[field])
        for credential in item.get("credentials", []):
            assert credential in names("controller_credentials"), "%s: credential %r is not defined" % (where, credential)
        if "playbook" in item:
            assert os.path.isfile(os.path.join(REPO, item["playbook"])), "%s: no playbook %s" % (where, item["playbook"])
        if "source_path" in item:
            assert os.path.isfile(os.path.join(REPO, item["source_path"])), where


def known_variables():
    """Every option of every role entry point, and every variable a playbook of the repository reads in a template,
    a condition or its vars (names with an underscore, comments left out: words of prose do not count)."""
    known = set()
    for path in glob.glob(os.path.join(REPO, "roles", "*", "meta", "argument_specs.yml")):
        with open(path) as handle:
            for entry in yaml.safe_load(handle)["argument_specs"].values():
                known.update(entry.get("options", {}))
    for path in glob.glob(os.path.join(REPO, "playbooks", "**", "*.yml"), recursive=True):
        with open(path) as handle:
            text = "\n".join(line.split(" #")[0] for line in handle if not line.lstrip().startswith("#"))
        known.update(re.findall(r"\b([a-z][a-z0-9]*_[a-z0-9_]+)\b", text))
    return known


def test_every_variable_a_survey_a_template_or_a_credential_sets_is_one_the_playbooks_read():
    known = known_variables()
    for key, item in objects():
        where = "%s %s" % (key, item["name"])
        variables = [q["variable"] for q in item.get("survey_spec", {}).get("spec", [])]
        variables += list(item.get("extra_vars", {}))
        variables += list(item.get("injectors", {}).get("extra_vars", {}))
        for variable in variables:
            assert variable in known, "%s: %s is read by no role or playbook" % (where, variable)


def test_every_survey_question_is_well_formed_and_its_default_is_an_answer_it_accepts():
    for key, item in objects():
        spec = item.get("survey_spec")
        if not spec:
            assert not item.get("survey_enabled"), item["name"]
            continue
        assert item.get("survey_enabled") is True, item["name"]
        variables = [q["variable"] for q in spec["spec"]]
        assert len(set(variables)) == len(variables), item["name"]
        for question in spec["spec"]:
            where = "%s: %s" % (item["name"], question["variable"])
            assert question["type"] in SURVEY_TYPES and question["question_name"], where
            assert re.match(r"^[a-z_][a-z0-9_]*$", question["variable"]), where
            default = question.get("default", "")
            if question["type"] == "multiplechoice":
                assert question["choices"] and default in question["choices"], where
            if question["type"] in ("text", "textarea"):
                assert 0 <= question["min"] <= question["max"], where
                assert default == "" or question["min"] <= len(default) <= question["max"], where


def test_credential_types_inject_only_their_inputs_and_no_credential_holds_a_secret_value():
    for credential_type in CONTENT["controller_credential_types"]:
        inputs = {field["id"] for field in credential_type["inputs"]["fields"]}
        for value in credential_type["injectors"]["extra_vars"].values():
            # AWX's template, kept as written (!unsafe): one input each.
            assert re.match(r"^\{\{ (\w+) \}\}$", value) and re.match(r"^\{\{ (\w+) \}\}$", value).group(1) in inputs, value
    secrets = {"ssh_key_data", "password", "become_password", "ssh_key_unlock", "vault_password"}
    for credential in CONTENT["controller_credentials"]:
        for name, value in credential["inputs"].items():
            if name in secrets:
                assert re.match(r"^\{\{ \w+ \}\}$", value), "%s: %s must come from a variable" % (credential["name"], name)
