# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus text exposition, parsed as a scrape would, and the verdict of a ``metric`` probe (pure)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

from .probe_schema import FAILED, METRIC_NAME_RE, OPS, PASSED

_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*')
_ESCAPE_RE = re.compile(r"\\(.)")


def _unescape(value):
    return _ESCAPE_RE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _parse_value(text):
    try:
        return float(text)
    except ValueError:
        raise ValueError("invalid sample value %r" % (text,))


def parse_sample(line):
    """One sample line -> (name, labels, value); raise ValueError when it is not one."""
    match = METRIC_NAME_RE.match(line)
    if not match:
        raise ValueError("no metric name")
    name, pos = match.group(0), match.end()
    labels = {}
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    if pos < len(line) and line[pos] == "{":
        pos += 1
        while True:
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos >= len(line):
                raise ValueError("unterminated label set")
            if line[pos] == "}":
                pos += 1
                break
            label = _LABEL_RE.match(line, pos)
            if not label:
                raise ValueError("invalid label set")
            labels[label.group(1)] = _unescape(label.group(2))
            pos = label.end()
            if line[pos:pos + 1] == ",":
                pos += 1
            elif line[pos:pos + 1] != "}":
                raise ValueError("invalid label set")
    fields = line[pos:].split()
    if "#" in fields:  # OpenMetrics exemplar
        fields = fields[:fields.index("#")]
    if not 1 <= len(fields) <= 2:
        raise ValueError("expected a value and an optional timestamp")
    value = _parse_value(fields[0])
    if len(fields) == 2:
        _parse_value(fields[1])
    return name, labels, value


def parse_exposition(text):
    """Prometheus text exposition format -> list of (name, labels, value).

    Comments (``# HELP``, ``# TYPE``, ``# EOF``) and blank lines are skipped; values may be
    ``+Inf``, ``-Inf`` or ``NaN``; timestamps are accepted and ignored. A line that is no sample
    raises ValueError with its number, as a Prometheus scrape would fail.
    """
    samples = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            samples.append(parse_sample(line))
        except ValueError as exc:
            raise ValueError("line %d is not a sample (%s): %r" % (lineno, exc, line[:120]))
    return samples


def format_value(value):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return "%d" % value
    return repr(float(value))


def format_selector(name, labels):
    if not labels:
        return name
    return "%s{%s}" % (name, ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels)))


def evaluate_metric(probe, samples):
    """(verdict, detail) of a metric probe over parsed samples: every matching sample must hold."""
    wanted = probe.get("labels") or {}
    selector = format_selector(probe["metric"], wanted)
    matching = [(labels, value) for name, labels, value in samples
                if name == probe["metric"] and all(labels.get(k) == v for k, v in wanted.items())]
    condition = "%s %s" % (probe["op"], format_value(probe["threshold"]))
    if not matching:
        return FAILED, "metric %s not found" % selector
    compare = OPS[probe["op"]]
    bad = [(labels, value) for labels, value in matching if not compare(value, probe["threshold"])]
    if bad:
        labels, value = bad[0]
        more = " (%d of %d samples)" % (len(bad), len(matching)) if len(matching) > 1 else ""
        return FAILED, "%s = %s, expected %s%s" % (format_selector(probe["metric"], labels), format_value(value),
                                                   condition, more)
    values = ", ".join(format_value(value) for _labels, value in matching[:5])
    if len(matching) > 5:
        values += ", ..."
    if len(matching) == 1:
        return PASSED, "%s = %s %s" % (selector, values, condition)
    return PASSED, "%d samples of %s, all %s (%s)" % (len(matching), selector, condition, values)
