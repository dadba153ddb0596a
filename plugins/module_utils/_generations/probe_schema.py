# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one probe schema: a release's ``health_checks`` (run on the device by generations) and the health gate's
``probes`` (the ``edgeops.fleet.health_check`` module) are the same declarations, validated here.

Table-driven: ``TYPES`` says which keys each type requires and allows, ``DEFAULTS`` fills the rest, and
``_CHECKS`` normalises one key's value. Errors name the list, the index (and name) and the key, such as
``probes[2] (web).url must start with http:// or https://``. Documented once, for ansible-doc, in
plugins/doc_fragments/probes.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import operator
import re

PASSED = "passed"
FAILED = "failed"
INCONCLUSIVE = "inconclusive"
VERDICTS = (PASSED, FAILED, INCONCLUSIVE)

COMMON = ("name", "type", "retries", "interval", "timeout")
# type: (required keys, optional keys)
TYPES = {
    "http": (("url",), ("status", "body", "body_regex")),
    "tcp": (("port",), ("host",)),
    "container": (("service",), ()),
    "systemd": (("unit",), ()),
    "metric": (("url", "metric", "op", "threshold"), ("labels",)),
    "command": (("argv",), ("exit_code",)),
}
DEFAULTS = {"retries": 3, "interval": 2, "timeout": 5, "status": 200, "host": "127.0.0.1", "exit_code": 0}
OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_URL_RE = re.compile(r"^https?://\S+$")
METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ProbeError(ValueError):
    """A probe declaration is refused; the message names the probe (index and name) and the key."""


def number(where, key, value, low=None, high=None, integer=False):
    """A number (or a numeric string) within [low, high]; errors name ``where.key`` (``key`` alone without where)."""
    if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        text = value.strip()
        value = int(text) if re.match(r"^[+-]?\d+$", text) else float(text)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and low is not None and high is not None:
        ok = low <= value <= high
    if not ok:
        kind = "a whole number" if integer else "a number"
        bounds = " between %s and %s" % (low, high) if low is not None and high is not None else ""
        raise ProbeError("%s must be %s%s, got %r" % ("%s.%s" % (where, key) if where else key, kind, bounds, value))
    return int(value) if integer else value


def _bounded(low=None, high=None, integer=False):
    return lambda where, key, value: number(where, key, value, low, high, integer)


def _text(where, key, value):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise ProbeError("%s.%s must be a non-empty string, got %r" % (where, key, value))
    return str(value)


def _url(where, key, value):
    url = _text(where, key, value)
    if not _URL_RE.match(url):
        raise ProbeError("%s.%s must start with http:// or https://, got %r" % (where, key, url))
    return url


def _regex(where, key, value):
    pattern = _text(where, key, value)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ProbeError("%s.%s is not a valid regular expression: %s" % (where, key, exc))
    return pattern


def _metric(where, key, value):
    if not isinstance(value, str) or not METRIC_NAME_RE.fullmatch(value):
        raise ProbeError("%s.%s must be a Prometheus metric name, got %r" % (where, key, value))
    return value


def _labels(where, key, value):
    value = value or {}
    if not isinstance(value, dict):
        raise ProbeError("%s.%s must be a mapping of label names to values, got %r" % (where, key, value))
    out = {}
    for label in sorted(value, key=str):
        if not isinstance(label, str) or not _LABEL_NAME_RE.match(label):
            raise ProbeError("%s.%s: %r is not a Prometheus label name" % (where, key, label))
        if isinstance(value[label], bool) or not isinstance(value[label], (str, int, float)):
            raise ProbeError("%s.%s.%s must be a string, got %r" % (where, key, label, value[label]))
        out[label] = str(value[label])
    return out


def _op(where, key, value):
    if not isinstance(value, str) or value not in OPS:
        raise ProbeError("%s.%s must be one of %s, got %r" % (where, key, " ".join(OPS), value))
    return value


def _argv(where, key, value):
    if not isinstance(value, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                              for a in value):
        raise ProbeError("%s.%s must be a list of strings (no shell), got %r" % (where, key, value))
    return [str(a) for a in value]


_CHECKS = {
    "retries": _bounded(1, 100, integer=True),
    "interval": _bounded(0, 600),
    "timeout": _bounded(0.1, 600),
    "url": _url,
    "status": _bounded(100, 599, integer=True),
    "body": _text,
    "body_regex": _regex,
    "host": _text,
    "port": _bounded(1, 65535, integer=True),
    "service": _text,
    "unit": _text,
    "metric": _metric,
    "labels": _labels,
    "op": _op,
    "threshold": _bounded(),
    "argv": _argv,
    "exit_code": _bounded(0, 255, integer=True),
}


def probe_where(prefix, index, probe):
    name = probe.get("name") if isinstance(probe, dict) else None
    if isinstance(name, str) and name.strip():
        return "%s[%d] (%s)" % (prefix, index, name)
    return "%s[%d]" % (prefix, index)


def validate_probe(probe, index, prefix="probes", named=True):
    """Normalise one probe (defaults filled in); raise ProbeError naming the key.

    ``named``: the name is required (gate probes); otherwise it defaults to ``<type>-<index>`` (health checks).
    """
    where = probe_where(prefix, index, probe)
    if not isinstance(probe, dict):
        raise ProbeError("%s must be a mapping, got %s" % (where, type(probe).__name__))
    kind = probe.get("type")
    name = probe.get("name")
    if named and (not isinstance(name, str) or not name.strip()):
        raise ProbeError("%s.name is required (a non-empty string), got %r" % (where, name))
    if not isinstance(kind, str) or kind not in TYPES:
        raise ProbeError("%s.type must be one of %s, got %r" % (where, ", ".join(sorted(TYPES)), kind))
    required, optional = TYPES[kind]
    allowed = set(COMMON) | set(required) | set(optional)
    unknown = sorted(str(key) for key in probe if key not in allowed)
    if unknown:
        raise ProbeError("%s: unknown key(s) %s for type %s (allowed: %s)"
                         % (where, ", ".join(unknown), kind, ", ".join(sorted(allowed))))
    for key in required:
        if probe.get(key) is None or probe.get(key) == "" or probe.get(key) == [] or probe.get(key) == {}:
            raise ProbeError("%s.%s is required for type %s" % (where, key, kind))
    out = {"name": str(name) if name not in (None, "") else "%s-%d" % (kind, index), "type": kind}
    for key in COMMON[2:] + required + optional:
        if probe.get(key) is not None or key in DEFAULTS or key == "labels":
            out[key] = _CHECKS[key](where, key, probe.get(key, DEFAULTS.get(key)))
    return out


def validate_probes(probes, prefix="probes", named=True, allow_empty=False):
    """Normalise a list of probes; names must be unique."""
    if not isinstance(probes, list) or not (probes or allow_empty):
        raise ProbeError("%s must be a %slist of mappings, got %r" % (prefix, "" if allow_empty else "non-empty ",
                                                                      probes))
    out, seen = [], {}
    for index, probe in enumerate(probes):
        norm = validate_probe(probe, index, prefix, named)
        if norm["name"] in seen:
            raise ProbeError("%s.name: %r is not unique (also %s[%d])"
                             % (probe_where(prefix, index, probe), norm["name"], prefix, seen[norm["name"]]))
        seen[norm["name"]] = index
        out.append(norm)
    return out
