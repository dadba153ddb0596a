# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json

import pytest

from ansible_collections.edgeops.fleet.plugins.plugin_utils._secrets import (
    LABEL, SecretsError, aws_value, fingerprints, hashi_vault_value, label_value, parse_label, resolve, rotation_plan,
    scrub, stamp_release, validate_definitions, vault_value)
from ansible_collections.edgeops.fleet.plugins.plugin_utils._workloads import render_release, secret_owners

VALUE = "tok-Qm4Zr8Lx2Wp6"
OTHER = "key-Hs3Nv7Bc1Kd9"
SHA_A = "a1" * 32
SHA_B = "b2" * 32
DIGEST = "sha256:" + "ab" * 32
MANIFEST = {
    "release": "demo-1.0.0",
    "workloads": {
        "reader": {"image": "edgeops/reader", "digest": DIGEST, "cpus": 0.1, "memory": "32m", "pids": 16,
                   "secrets": ["api_token", "model_key"]},
        "other": {"image": "edgeops/other", "digest": DIGEST, "cpus": 0.1, "memory": "32m", "pids": 16,
                  "secrets": ["model_key"]},
        "plain": {"image": "edgeops/plain", "digest": DIGEST, "cpus": 0.1, "memory": "32m", "pids": 16},
    },
}


def rendered():
    release, secrets, images = render_release(copy.deepcopy(MANIFEST), registry="127.0.0.1:5000")
    return {"release": release, "secrets": secrets, "secret_owners": secret_owners(MANIFEST), "images": images}


# ---- definitions ----

def test_definitions_default_to_the_vault_source_and_keep_their_keys():
    out = validate_definitions([
        {"name": "api_token"},
        {"name": "model_key", "source": "aws", "secret_id": "edge/model", "json_key": "key", "endpoint_url": "http://x"},
        {"name": "telemetry", "source": "hashi_vault", "path": "edge/t", "field": "password", "version": 2},
    ])
    assert [d["source"] for d in out] == ["vault", "aws", "hashi_vault"]
    assert out[1]["json_key"] == "key"


@pytest.mark.parametrize("definitions, message", [
    ({"name": "x"}, "secrets_definitions must be a list"),
    (["x"], "secrets_definitions[0] must be a mapping"),
    ([{"name": "Bad Name"}], "secrets_definitions[0] (Bad Name).name must be 1-63 lowercase"),
    ([{"name": "a"}, {"name": "a"}], "secrets_definitions[1] (a).name a is defined twice"),
    ([{"name": "a", "source": "gcp"}], "secrets_definitions[0] (a).source must be one of vault, aws, hashi_vault, got 'gcp'"),
    ([{"name": "a", "source": "aws"}], "secrets_definitions[0] (a).secret_id is required for source aws"),
    ([{"name": "a", "source": "hashi_vault", "path": "p"}], "secrets_definitions[0] (a).field is required for source hashi_vault"),
    ([{"name": "a", "secret_id": "x"}], "secrets_definitions[0] (a): unknown key(s) secret_id for source vault"),
    ([{"name": "a", "var": "not a var"}], "secrets_definitions[0] (a): var of secret a must be the name of a variable"),
    ([{"name": "a", "source": "hashi_vault", "path": "p", "field": "f", "version": 0}], "(a).version must be a version"),
])
def test_bad_definitions_are_refused_naming_the_definition_and_key(definitions, message):
    with pytest.raises(SecretsError) as err:
        validate_definitions(definitions)
    assert message in str(err.value)


@pytest.mark.parametrize("var", [VALUE + " with a space", "{{ " + VALUE + " }}", "s3cr3t!" + VALUE, 42])
def test_a_var_that_is_a_value_is_refused_without_echoing_it(var):
    # var: "{{ vault_token }}" is templated before the role sees it: what arrives is the value.
    with pytest.raises(SecretsError) as err:
        validate_definitions([{"name": "api_token", "var": var}])
    message = str(err.value)
    assert message == ("secrets_definitions[0] (api_token): var of secret api_token must be the name of a variable "
                       "(a string like vault_token), not a value or a template")
    assert str(var) not in message and VALUE not in message


# ---- values from each source ----

def test_aws_value_is_the_secret_string_or_one_key_of_its_json():
    plain = {"name": "k", "source": "aws", "secret_id": "edge/k"}
    assert aws_value(plain, VALUE) == VALUE
    keyed = dict(plain, json_key="api_key")
    assert aws_value(keyed, json.dumps({"api_key": VALUE, "user": "edge"})) == VALUE


@pytest.mark.parametrize("secret_string, message", [
    ("not json " + VALUE, "the SecretString is not a JSON object"),
    (json.dumps({"user": VALUE}), "the JSON object has no key api_key (keys: user)"),
    (json.dumps({"api_key": {"nested": VALUE}}), "is a JSON object, not a string"),
    (json.dumps({"api_key": ""}), "is empty"),
])
def test_aws_errors_name_the_secret_and_source_and_never_the_value(secret_string, message):
    with pytest.raises(SecretsError) as err:
        aws_value({"name": "k", "source": "aws", "secret_id": "edge/k", "json_key": "api_key"}, secret_string)
    assert message in str(err.value)
    assert "secret k (source aws, secret_id edge/k, json_key api_key)" in str(err.value)
    assert VALUE not in str(err.value)


def test_hashi_vault_value_is_a_field_of_the_kv2_secret():
    definition = {"name": "t", "source": "hashi_vault", "path": "edge/t", "field": "password"}
    assert hashi_vault_value(definition, {"secret": {"password": VALUE}, "metadata": {"version": 3}}) == VALUE
    with pytest.raises(SecretsError) as err:
        hashi_vault_value(definition, {"secret": {"user": VALUE}})
    assert "secret t (source hashi_vault, path edge/t, field password): the secret has no field password (fields: user)" \
        in str(err.value)
    assert VALUE not in str(err.value)
    with pytest.raises(SecretsError, match="the answer has no secret data"):
        hashi_vault_value(definition, {"raw": {}})


# ---- resolving: errors name the secret and source, never a value ----

def test_resolve_returns_every_value_by_name():
    defs = validate_definitions([{"name": "a"}, {"name": "b", "source": "aws", "secret_id": "edge/b"}])
    assert resolve(defs, lambda d: {"a": VALUE, "b": OTHER}[d["name"]]) == {"a": VALUE, "b": OTHER}


def test_a_source_error_names_the_secret_and_source_and_is_scrubbed_of_values_read_before():
    defs = validate_definitions([{"name": "a"}, {"name": "b", "source": "aws", "secret_id": "edge/b"}])

    def fetch(definition):
        if definition["name"] == "a":
            return VALUE
        raise RuntimeError("AccessDenied for edge/b (while the request carried %s)" % VALUE)

    with pytest.raises(SecretsError) as err:
        resolve(defs, fetch)
    message = str(err.value)
    assert message.startswith("secret b (source aws, secret_id edge/b) could not be read: RuntimeError: AccessDenied")
    assert VALUE not in message and "********" in message


def test_an_error_of_our_own_gets_the_secret_and_source_in_front():
    defs = validate_definitions([{"name": "a", "source": "hashi_vault", "path": "p", "field": "f"}])

    def fetch(definition):
        raise SecretsError("the lookup returned nothing")

    with pytest.raises(SecretsError) as err:
        resolve(defs, fetch)
    assert str(err.value) == "secret a (source hashi_vault, path p, field f): the lookup returned nothing"


# A value that looks like a variable name (VALUE_AS_NAME) passes validation and is then undefined.
VALUE_AS_NAME = "tok_Qm4Zr8Lx2Wp6"


def test_an_undefined_var_is_not_named_when_it_may_be_a_rendered_value():
    defs = validate_definitions([{"name": "a"}, {"name": "b", "var": VALUE_AS_NAME}])

    def fetch(definition):
        if definition["name"] == "a":
            return VALUE
        raise RuntimeError("'%s' is undefined (with %s)" % (definition["var"], VALUE))

    with pytest.raises(SecretsError) as err:
        resolve(defs, fetch)
    message = str(err.value)
    assert message.startswith("secret b (source vault, the variable its var names) could not be read: RuntimeError: ")
    assert VALUE_AS_NAME not in message and VALUE not in message and "'********' is undefined" in message


def test_an_error_of_our_own_about_a_var_is_scrubbed_of_it():
    defs = validate_definitions([{"name": "b", "var": VALUE_AS_NAME}])

    def fetch(definition):
        return vault_value(definition, None)  # "secret b (source vault, variable <var>) has no value"

    with pytest.raises(SecretsError) as err:
        resolve(defs, fetch)
    assert str(err.value) == "secret b (source vault, variable ********) has no value"

    def fetch_bare(definition):
        raise SecretsError("%s went wrong" % definition["var"])

    with pytest.raises(SecretsError) as err:
        resolve(defs, fetch_bare)
    assert str(err.value) == "secret b (source vault, the variable its var names): ******** went wrong"


def test_scrub_masks_the_longest_value_first():
    assert scrub("x abcdef y abc", ["abc", "abcdef"]) == "x ******** y ********"
    assert scrub("nothing", ["", None]) == "nothing"


# ---- fingerprints and labels ----

def test_fingerprints_are_the_start_of_the_digest_of_the_encrypted_copy():
    stats = [{"item": "api_token", "stat": {"exists": True, "checksum": SHA_A}},
             {"item": "model_key", "stat": {"exists": True, "checksum": SHA_B}}]
    assert fingerprints(stats) == {"api_token": SHA_A[:16], "model_key": SHA_B[:16]}


def test_in_check_mode_a_changed_or_new_secret_is_pending():
    stats = [{"item": "api_token", "stat": {"exists": True, "checksum": SHA_A}},
             {"item": "model_key", "stat": {"exists": False}},
             {"item": "unchanged", "stat": {"exists": True, "checksum": SHA_B}}]
    files = [{"item": "api_token", "changed": True}, {"item": "model_key", "changed": True},
             {"item": "unchanged", "changed": False}]
    assert fingerprints(stats, files, check_mode=True) == {"api_token": "pending", "model_key": "pending",
                                                           "unchanged": SHA_B[:16]}


def test_a_missing_encrypted_copy_is_an_error_outside_check_mode():
    with pytest.raises(SecretsError, match="secret model_key has no encrypted copy"):
        fingerprints([{"item": "model_key", "stat": {"exists": False}}])


def test_stamp_labels_exactly_the_services_that_read_secrets():
    before = rendered()
    out = stamp_release(before, {"api_token": "1" * 16, "model_key": "2" * 16})
    services = out["release"]["compose"]["services"]
    assert services["reader"]["labels"][LABEL] == "api_token=%s,model_key=%s" % ("1" * 16, "2" * 16)
    assert services["other"]["labels"][LABEL] == "model_key=" + "2" * 16
    assert LABEL not in services["plain"]["labels"]
    # The input is left alone (the role keeps it until the set_fact replaces it).
    assert LABEL not in before["release"]["compose"]["services"]["reader"]["labels"]
    # The rest of the release is the same.
    assert out["release"]["health_checks"] == before["release"]["health_checks"]
    assert out["release"]["compose"]["secrets"] == before["release"]["compose"]["secrets"]


def test_a_changed_fingerprint_changes_only_the_services_that_read_that_secret():
    one = stamp_release(rendered(), {"api_token": "1" * 16, "model_key": "2" * 16})["release"]["compose"]["services"]
    two = stamp_release(rendered(), {"api_token": "3" * 16, "model_key": "2" * 16})["release"]["compose"]["services"]
    assert one["reader"] != two["reader"]
    assert one["other"] == two["other"]
    assert one["plain"] == two["plain"]


def test_stamp_refuses_a_secret_without_fingerprint_and_a_wrong_input():
    with pytest.raises(SecretsError, match="secret model_key has no fingerprint"):
        stamp_release(rendered(), {"api_token": "1" * 16})
    with pytest.raises(SecretsError, match="expects the output of edgeops.fleet.workloads_release"):
        stamp_release({"compose": {}}, {})


def test_label_value_round_trips():
    text = label_value(["b", "a", "a"], {"a": "pending", "b": "c" * 16})
    assert text == "a=pending,b=" + "c" * 16
    assert parse_label(text) == {"a": "pending", "b": "c" * 16}
    assert parse_label("") == {}


# ---- rotation plan ----

def compose(fp_token):
    return stamp_release(rendered(), {"api_token": fp_token, "model_key": SHA_B[:16]})["release"]["compose"]


def stat(name, checksum):
    return {"item": name, "stat": {"exists": checksum is not None, "checksum": checksum}}


def test_rotation_keeps_the_current_copy_aside_when_it_is_what_runs():
    plan = rotation_plan(compose(SHA_A[:16]), ["api_token"], [stat("api_token", SHA_A)], [stat("api_token", None)])
    assert plan == {"keep": {"api_token": "current"}, "services": ["reader"]}
    plan = rotation_plan(compose(SHA_A[:16]), ["model_key"], [stat("model_key", SHA_B)], [stat("model_key", None)])
    assert plan["services"] == ["other", "reader"]


def test_rotation_after_an_unfinished_one_keeps_the_copy_already_aside():
    plan = rotation_plan(compose(SHA_A[:16]), ["api_token"], [stat("api_token", "c3" * 32)], [stat("api_token", SHA_A)])
    assert plan["keep"] == {"api_token": "previous"}


def test_rotation_refuses_what_it_could_not_put_back():
    with pytest.raises(SecretsError) as err:
        rotation_plan(compose(SHA_A[:16]), ["api_token"], [stat("api_token", "c3" * 32)], [stat("api_token", None)])
    assert "secret api_token: neither its encrypted copy nor the one kept aside" in str(err.value)
    with pytest.raises(SecretsError, match="secret nope is not mounted by any workload"):
        rotation_plan(compose(SHA_A[:16]), ["nope"], [stat("nope", SHA_A)], [stat("nope", None)])
