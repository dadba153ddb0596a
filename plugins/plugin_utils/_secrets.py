# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets of the workloads: where each value comes from, and how a changed value reaches the containers.

Pure functions (no I/O), shared by the ``secrets_resolve`` action plugin, the ``secrets_stamp`` filter and the
unit tests. No error message ever contains a value: errors name the secret, its source and the key at fault, and
any text that comes from a source (an SDK's exception) is scrubbed of every value known at that point.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import re

SOURCES = ("vault", "aws", "hashi_vault")
DEFAULT_SOURCE = "vault"
# Keys each source accepts besides name and source.
SOURCE_KEYS = {
    "vault": ("var",),
    "aws": ("secret_id", "json_key", "version_stage", "region", "endpoint_url"),
    "hashi_vault": ("path", "field", "mount_point", "url", "version"),
}
REQUIRED_KEYS = {"vault": (), "aws": ("secret_id",), "hashi_vault": ("path", "field")}
# Label on every service that reads secrets: which value of each secret its container mounts.
LABEL = "org.edgeops.secrets"
MASK = "********"

# The same names the workloads role accepts (a file name under the secrets directory).
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{8,64}$|^pending$")


class SecretsError(ValueError):
    """A definition or a value is refused; the message names the secret and source, never a value."""


def _where(index, definition):
    name = definition.get("name") if isinstance(definition, dict) else None
    return "secrets_definitions[%d]%s" % (index, " (%s)" % name if isinstance(name, str) and name else "")


def validate_definitions(definitions):
    """Check ``secrets_definitions`` and return a normalised copy (source filled in, unknown keys refused)."""
    if not isinstance(definitions, list):
        raise SecretsError("secrets_definitions must be a list of {name, source, ...}, got %s"
                           % type(definitions).__name__)
    out, seen = [], set()
    for index, definition in enumerate(definitions):
        where = _where(index, definition)
        if not isinstance(definition, dict):
            raise SecretsError("%s must be a mapping with name and source" % where)
        name = definition.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise SecretsError("%s.name must be 1-63 lowercase letters, digits, '-' or '_' (it becomes a file name), "
                               "got %r" % (where, name))
        if name in seen:
            raise SecretsError("%s.name %s is defined twice" % (where, name))
        seen.add(name)
        source = definition.get("source", DEFAULT_SOURCE)
        if source not in SOURCES:
            raise SecretsError("%s.source must be one of %s, got %r" % (where, ", ".join(SOURCES), source))
        allowed = ("name", "source") + SOURCE_KEYS[source]
        unknown = sorted(set(definition) - set(allowed))
        if unknown:
            raise SecretsError("%s: unknown key(s) %s for source %s (allowed: %s)"
                               % (where, ", ".join(unknown), source, ", ".join(allowed)))
        for key in REQUIRED_KEYS[source]:
            if not isinstance(definition.get(key), str) or not definition[key]:
                raise SecretsError("%s.%s is required for source %s" % (where, key, source))
        norm = dict(definition, source=source)
        if source == "vault" and "var" in norm and (not isinstance(norm["var"], str) or not _VAR_RE.match(norm["var"])):
            # Never echo it: a template (var: "{{ vault_token }}") arrives here as the value it names.
            raise SecretsError("%s: var of secret %s must be the name of a variable (a string like vault_token), "
                               "not a value or a template" % (where, name))
        if source == "hashi_vault" and "version" in norm and (
                isinstance(norm["version"], bool) or not isinstance(norm["version"], int) or norm["version"] < 1):
            raise SecretsError("%s.version must be a version number >= 1" % where)
        out.append(norm)
    return out


def describe(definition):
    """What a definition points at, for messages: never a value."""
    source = definition["source"]
    if source == "vault":
        return "source vault, variable %s" % definition.get("var", "secrets_vault_values.%s" % definition["name"])
    if source == "aws":
        return "source aws, secret_id %s%s" % (definition["secret_id"],
                                               ", json_key %s" % definition["json_key"] if "json_key" in definition else "")
    return "source hashi_vault, path %s, field %s" % (definition["path"], definition["field"])


def scrub(text, values):
    """``text`` with every known value replaced by a mask (longest first, so no value survives in part)."""
    text = str(text)
    for value in sorted((v for v in values if isinstance(v, str) and v), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def _check_value(definition, value):
    if isinstance(value, (dict, list)):
        raise SecretsError("secret %s (%s) is a JSON %s, not a string: name the key with json_key"
                           % (definition["name"], describe(definition), "object" if isinstance(value, dict) else "list"))
    if value is None or isinstance(value, bool):
        raise SecretsError("secret %s (%s) has no value" % (definition["name"], describe(definition)))
    value = str(value)
    if not value:
        raise SecretsError("secret %s (%s) is empty" % (definition["name"], describe(definition)))
    return value


def aws_value(definition, secret_string):
    """The value of an AWS Secrets Manager secret: the SecretString, or one key of it when it is JSON."""
    if "json_key" not in definition:
        return _check_value(definition, secret_string)
    try:
        data = json.loads(secret_string) if isinstance(secret_string, str) else secret_string
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SecretsError("secret %s (%s): the SecretString is not a JSON object, so json_key cannot be applied"
                           % (definition["name"], describe(definition)))
    if definition["json_key"] not in data:
        raise SecretsError("secret %s (%s): the JSON object has no key %s (keys: %s)"
                           % (definition["name"], describe(definition), definition["json_key"],
                              ", ".join(sorted(str(k) for k in data)) or "none"))
    return _check_value(definition, data[definition["json_key"]])


def hashi_vault_value(definition, result):
    """The value of one field of a KV v2 secret (``result`` is what community.hashi_vault.vault_kv2_get returns)."""
    secret = result.get("secret") if isinstance(result, dict) else None
    if not isinstance(secret, dict):
        raise SecretsError("secret %s (%s): the answer has no secret data" % (definition["name"], describe(definition)))
    if definition["field"] not in secret:
        raise SecretsError("secret %s (%s): the secret has no field %s (fields: %s)"
                           % (definition["name"], describe(definition), definition["field"],
                              ", ".join(sorted(str(k) for k in secret)) or "none"))
    return _check_value(definition, secret[definition["field"]])


def vault_value(definition, value):
    return _check_value(definition, value)


def resolve(definitions, fetch):
    """Resolve every definition with ``fetch(definition) -> value`` (already the final string for its source).

    Any exception from ``fetch`` (an SDK's, an undefined variable ...) becomes a SecretsError that names the secret
    and its source; its text is scrubbed of every value resolved so far, and of the failing one if it got that far.
    A failing definition's ``var`` is scrubbed too and not named: a value that looks like a variable name (a template
    that was rendered to it) is refused as undefined, and the error would echo it.
    """
    values = {}
    for definition in definitions:
        var = definition.get("var")
        known = list(values.values()) + [var]
        shown = "source vault, the variable its var names" if isinstance(var, str) and var else describe(definition)
        try:
            values[definition["name"]] = fetch(definition)
        except SecretsError as exc:
            message = scrub(exc, known)
            if not message.startswith("secret %s " % definition["name"]):
                message = "secret %s (%s): %s" % (definition["name"], shown, message)
            raise SecretsError(message)
        except Exception as exc:  # the source's own error: keep its reason, never a value
            reason = scrub("%s: %s" % (type(exc).__name__, exc), known)
            raise SecretsError("secret %s (%s) could not be read: %s" % (definition["name"], shown, reason))
    return values


def label_value(names, fingerprints):
    """``org.edgeops.secrets`` of a service reading ``names``: ``name=fingerprint`` pairs, sorted."""
    pairs = []
    for name in sorted(set(names)):
        fingerprint = fingerprints.get(name)
        if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.match(fingerprint):
            raise SecretsError("secret %s has no fingerprint of its delivered value (got %r): deliver it first"
                               % (name, fingerprint))
        pairs.append("%s=%s" % (name, fingerprint))
    return ",".join(pairs)


def parse_label(text):
    """``name=fingerprint,...`` -> dict."""
    out = {}
    for pair in (text or "").split(","):
        if pair:
            name, _sep, fingerprint = pair.partition("=")
            out[name] = fingerprint
    return out


def stamp_release(rendered, fingerprints):
    """The workloads role's rendered release with each service that reads secrets labelled with their fingerprints.

    A changed value is re-encrypted at rest, which changes its fingerprint, hence the service's label, hence the
    compose file: the next generation recreates exactly the containers that read it, so they mount the new file.
    Returns a copy; services without secrets are left alone.
    """
    if not isinstance(rendered, dict) or not isinstance(rendered.get("release"), dict):
        raise SecretsError("secrets_stamp expects the output of edgeops.fleet.workloads_release")
    out = copy.deepcopy(rendered)
    compose = out["release"].get("compose") or {}
    for service in (compose.get("services") or {}).values():
        names = service.get("secrets") or []
        if names:
            service.setdefault("labels", {})[LABEL] = label_value(names, fingerprints)
    return out


def fingerprints(stat_results, file_results=(), check_mode=False):
    """Secret name -> fingerprint, from the ``stat`` results (sha256) of the encrypted copies.

    The fingerprint is the first 16 hex digits of the sha256 of the encrypted copy: ``systemd-creds encrypt`` draws a
    fresh IV each time, so it changes exactly when a value is (re-)encrypted and tells nothing about the value, unlike
    a digest of the plaintext, which could be guessed offline for a short password. In check mode a changed value is
    not encrypted yet: ``pending`` still makes the staged generation differ, as it will.
    """
    changed = dict((r.get("item"), bool(r.get("changed"))) for r in file_results or [] if isinstance(r, dict))
    out = {}
    for result in stat_results or []:
        name = result.get("item")
        stat = result.get("stat") or {}
        if check_mode and (changed.get(name) or not stat.get("exists")):
            out[name] = "pending"
            continue
        checksum = stat.get("checksum")
        if not stat.get("exists") or not isinstance(checksum, str) or not re.match(r"^[0-9a-f]{64}$", checksum):
            raise SecretsError("secret %s has no encrypted copy to fingerprint (a sha256 stat of its .cred file)" % name)
        out[name] = checksum[:16]
    return out


def rotation_plan(compose, names, current_stats, previous_stats):
    """Before a rotation: which encrypted copy holds the value the running generation mounts, per secret.

    ``compose`` is the running generation's compose file, whose labels give the fingerprint each secret's readers
    mount; the stat results (sha256) are those of ``<name>.cred`` (the current copy) and ``previous/<name>.cred``
    (a copy kept aside). ``current`` is the normal case: keep it aside before the new value replaces it.
    ``previous`` means an earlier rotation did not finish (the new value was delivered but the generation that
    mounts it was never confirmed): the copy kept aside is still the running one and stays. Anything else cannot be
    put back safely and is refused. Returns {"keep": {name: current|previous}, "services": [...]} where services are
    the compose services that read any of ``names``.
    """
    services = (compose or {}).get("services") or {}
    mounted, readers = {}, set()
    for service_name, service in services.items():
        fingerprints_here = parse_label((service.get("labels") or {}).get(LABEL, ""))
        mounted.update(fingerprints_here)
        if set(service.get("secrets") or []) & set(names):
            readers.add(service_name)

    def digest(stats, name):
        for result in stats or []:
            if result.get("item") == name and (result.get("stat") or {}).get("exists"):
                return str(result["stat"].get("checksum", ""))[:16]
        return None

    keep = {}
    for name in names:
        if name not in mounted:
            raise SecretsError("secret %s is not mounted by any workload of the running generation (no %s label "
                               "names it): nothing to rotate" % (name, LABEL))
        if digest(current_stats, name) == mounted[name]:
            keep[name] = "current"
        elif digest(previous_stats, name) == mounted[name]:
            keep[name] = "previous"
        else:
            raise SecretsError("secret %s: neither its encrypted copy nor the one kept aside is the value the running "
                               "generation mounts (fingerprint %s), so it could not be put back if the rotation failed; "
                               "converge the workloads first" % (name, mounted[name]))
    return {"keep": keep, "services": sorted(readers)}
