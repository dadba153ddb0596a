# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health gate of a staged rollout: probes, their verdicts and the soak.

Used by the ``edgeops.fleet.health_check`` module, on the device or on the controller
(``delegate_to: localhost``), so it uses the Python standard library only. The container, systemd
and command probes are those of the device's local health checks (``_generations.Probe``); this
file adds what a gate needs on top of them:

* three verdicts instead of ok/not ok. ``inconclusive`` means the target could not be reached at
  all (connect timeout, no route to host or network, name resolution failure), so nothing can be
  said about the service; ``failed`` means the host answered and the answer was wrong (connection
  refused, wrong status or body, metric out of bounds);
* a ``metric`` probe over a Prometheus text exposition endpoint and ``body_regex`` for ``http``;
* the soak: once every probe passed, all of them are sampled again for ``soak`` seconds and a
  single failed sample fails the probe (and ends the gate).

Validation, exposition parsing and the gate itself are pure (clock, sleep and the probe are
injected) and unit-tested in tests/unit/plugins/module_utils/test_health.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import http.client
import math
import operator
import re
import socket
import time
import urllib.error
import urllib.request

from ansible_collections.edgeops.fleet.plugins.module_utils import _generations as gens

PASSED = "passed"
FAILED = "failed"
INCONCLUSIVE = "inconclusive"
VERDICTS = (PASSED, FAILED, INCONCLUSIVE)

PROBE_COMMON = ("name", "type", "retries", "interval", "timeout")
PROBE_REQUIRED = {
    "http": ("url",),
    "tcp": ("port",),
    "container": ("service",),
    "systemd": ("unit",),
    "metric": ("url", "metric", "op", "threshold"),
    "command": ("argv",),
}
PROBE_OPTIONAL = {
    "http": ("status", "body", "body_regex"),
    "tcp": ("host",),
    "container": (),
    "systemd": (),
    "metric": ("labels",),
    "command": ("exit_code",),
}
OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
# Connect errors that mean "the target could not be reached", as opposed to "it answered no".
UNREACHABLE_ERRNOS = frozenset(getattr(errno, name) for name in ("EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN",
                                                                 "ENETDOWN", "ETIMEDOUT") if hasattr(errno, name))
# A probe with a shorter interval would be sampled in a tight loop during the soak.
SOAK_MIN_INTERVAL = 0.5
HTTP_BODY_LIMIT = 1 << 20
METRIC_BODY_LIMIT = 16 << 20

_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_URL_RE = re.compile(r"^https?://\S+$")
_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*')
_ESCAPE_RE = re.compile(r"\\(.)")


class HealthError(ValueError):
    """A probe declaration is refused; the message names the probe (index and name) and the key."""


# --------------------------------------------------------------------------------------------
# Validation (pure)
# --------------------------------------------------------------------------------------------

def _probe_where(index, probe):
    name = probe.get("name") if isinstance(probe, dict) else None
    if isinstance(name, str) and name.strip():
        return "probes[%d] (%s)" % (index, name)
    return "probes[%d]" % index


def _number(where, key, value, low=None, high=None, integer=False):
    """A number (or a numeric string) within [low, high]; errors name ``where.key``."""
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
        raise HealthError("%s must be %s%s, got %r" % ("%s.%s" % (where, key) if where else key, kind, bounds, value))
    return int(value) if integer else value


def _text(where, key, value):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise HealthError("%s.%s must be a non-empty string, got %r" % (where, key, value))
    return str(value)


def validate_probe(probe, index):
    """Normalise one probe declaration (defaults filled in); raise HealthError naming the key."""
    where = _probe_where(index, probe)
    if not isinstance(probe, dict):
        raise HealthError("%s must be a mapping, got %s" % (where, type(probe).__name__))
    name = probe.get("name")
    if not isinstance(name, str) or not name.strip():
        raise HealthError("%s.name is required (a non-empty string), got %r" % (where, name))
    kind = probe.get("type")
    if kind not in PROBE_REQUIRED:
        raise HealthError("%s.type must be one of %s, got %r" % (where, ", ".join(sorted(PROBE_REQUIRED)), kind))
    allowed = set(PROBE_COMMON) | set(PROBE_REQUIRED[kind]) | set(PROBE_OPTIONAL[kind])
    unknown = sorted(str(key) for key in probe if key not in allowed)
    if unknown:
        raise HealthError("%s: unknown key(s) %s for type %s (allowed: %s)"
                          % (where, ", ".join(unknown), kind, ", ".join(sorted(allowed))))
    for key in PROBE_REQUIRED[kind]:
        if probe.get(key) is None or probe.get(key) == "" or probe.get(key) == []:
            raise HealthError("%s.%s is required for type %s" % (where, key, kind))
    out = {
        "name": name,
        "type": kind,
        "retries": _number(where, "retries", probe.get("retries", 3), 1, 100, integer=True),
        "interval": _number(where, "interval", probe.get("interval", 2), 0, 600),
        "timeout": _number(where, "timeout", probe.get("timeout", 5), 0.1, 600),
    }
    if kind in ("http", "metric"):
        url = _text(where, "url", probe["url"])
        if not _URL_RE.match(url):
            raise HealthError("%s.url must start with http:// or https://, got %r" % (where, url))
        out["url"] = url
    if kind == "http":
        out["status"] = _number(where, "status", probe.get("status", 200), 100, 599, integer=True)
        if probe.get("body") is not None:
            out["body"] = _text(where, "body", probe["body"])
        if probe.get("body_regex") is not None:
            pattern = _text(where, "body_regex", probe["body_regex"])
            try:
                re.compile(pattern)
            except re.error as exc:
                raise HealthError("%s.body_regex is not a valid regular expression: %s" % (where, exc))
            out["body_regex"] = pattern
    elif kind == "tcp":
        out["host"] = _text(where, "host", probe.get("host", "127.0.0.1"))
        out["port"] = _number(where, "port", probe["port"], 1, 65535, integer=True)
    elif kind == "container":
        out["service"] = _text(where, "service", probe["service"])
    elif kind == "systemd":
        out["unit"] = _text(where, "unit", probe["unit"])
    elif kind == "metric":
        metric = probe["metric"]
        if not isinstance(metric, str) or not _METRIC_NAME_RE.fullmatch(metric):
            raise HealthError("%s.metric must be a Prometheus metric name, got %r" % (where, metric))
        out["metric"] = metric
        labels = probe.get("labels") or {}
        if not isinstance(labels, dict):
            raise HealthError("%s.labels must be a mapping of label names to values, got %r" % (where, labels))
        out["labels"] = {}
        for label in sorted(labels, key=str):
            if not isinstance(label, str) or not _LABEL_NAME_RE.match(label):
                raise HealthError("%s.labels: %r is not a Prometheus label name" % (where, label))
            value = labels[label]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise HealthError("%s.labels.%s must be a string, got %r" % (where, label, value))
            out["labels"][label] = str(value)
        if probe["op"] not in OPS:
            raise HealthError("%s.op must be one of %s, got %r" % (where, " ".join(OPS), probe["op"]))
        out["op"] = probe["op"]
        out["threshold"] = _number(where, "threshold", probe["threshold"])
    elif kind == "command":
        argv = probe["argv"]
        if not isinstance(argv, list) or not all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                                 for a in argv):
            raise HealthError("%s.argv must be a list of strings (no shell), got %r" % (where, argv))
        out["argv"] = [str(a) for a in argv]
        out["exit_code"] = _number(where, "exit_code", probe.get("exit_code", 0), 0, 255, integer=True)
    return out


def validate_probes(probes):
    """Normalise the module's ``probes``; names must be unique."""
    if not isinstance(probes, list) or not probes:
        raise HealthError("probes must be a non-empty list of mappings, got %r" % (probes,))
    out, seen = [], {}
    for index, probe in enumerate(probes):
        norm = validate_probe(probe, index)
        if norm["name"] in seen:
            raise HealthError("%s.name: %r is not unique (also probes[%d])"
                              % (_probe_where(index, probe), norm["name"], seen[norm["name"]]))
        seen[norm["name"]] = index
        out.append(norm)
    return out


def validate_gate(probes, soak=0, fail_on=(FAILED, INCONCLUSIVE)):
    """Validate the whole gate; returns (probes, soak, fail_on) normalised."""
    soak = _number(None, "soak", soak, 0, 86400)
    fail_on = list(fail_on or [])
    bad = [v for v in fail_on if v not in (FAILED, INCONCLUSIVE)]
    if bad:
        raise HealthError("fail_on: %r is not a verdict the task can fail on (failed, inconclusive)" % (bad[0],))
    return validate_probes(probes), soak, fail_on


# --------------------------------------------------------------------------------------------
# Prometheus text exposition (pure)
# --------------------------------------------------------------------------------------------

def _unescape(value):
    return _ESCAPE_RE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _parse_value(text):
    try:
        return float(text)
    except ValueError:
        raise ValueError("invalid sample value %r" % (text,))


def parse_sample(line):
    """One sample line -> (name, labels, value); raise ValueError when it is not one."""
    match = _METRIC_NAME_RE.match(line)
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


# --------------------------------------------------------------------------------------------
# Probes (I/O)
# --------------------------------------------------------------------------------------------

def classify_connect_error(exc):
    """(verdict, reason) of an error raised while connecting (name resolution included)."""
    if isinstance(exc, (socket.gaierror, socket.herror)):
        return INCONCLUSIVE, "unreachable: cannot resolve the host name (%s)" % (exc.strerror or exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return INCONCLUSIVE, "unreachable: connect timed out"
    if getattr(exc, "errno", None) in UNREACHABLE_ERRNOS:
        return INCONCLUSIVE, "unreachable: %s" % (exc.strerror or exc)
    return FAILED, str(getattr(exc, "strerror", None) or exc)


class _ConnectError(OSError):
    """An error while connecting, tagged so that it comes out of urllib's URLError recognisable."""

    def __init__(self, cause):
        super(_ConnectError, self).__init__(str(cause))
        self.cause = cause


def _tag_connect_errors(create_connection):
    def create(*args, **kwargs):
        try:
            return create_connection(*args, **kwargs)
        except OSError as exc:
            raise _ConnectError(exc)
    return create


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        http.client.HTTPConnection.__init__(self, *args, **kwargs)
        self._create_connection = _tag_connect_errors(self._create_connection)


class _HTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class, req, **kwargs):
        return urllib.request.HTTPHandler.do_open(self, _HTTPConnection, req, **kwargs)


_HANDLERS = [urllib.request.ProxyHandler({}), _HTTPHandler]

if hasattr(http.client, "HTTPSConnection"):
    class _HTTPSConnection(http.client.HTTPSConnection):
        def __init__(self, *args, **kwargs):
            http.client.HTTPSConnection.__init__(self, *args, **kwargs)
            self._create_connection = _tag_connect_errors(self._create_connection)

    class _HTTPSHandler(urllib.request.HTTPSHandler):
        def do_open(self, http_class, req, **kwargs):
            return urllib.request.HTTPSHandler.do_open(self, _HTTPSConnection, req, **kwargs)

    _HANDLERS.append(_HTTPSHandler)


class NoResponse(Exception):
    """A GET that got no HTTP response: ``verdict`` says whether the host answered at all."""

    def __init__(self, verdict, reason):
        super(NoResponse, self).__init__(reason)
        self.verdict = verdict
        self.reason = reason


def _after_connect(exc, timeout):
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "no response within %s s (the connection was accepted)" % format_value(timeout)
    return str(getattr(reason, "strerror", None) or reason or type(reason).__name__)


def http_get(url, timeout, limit=HTTP_BODY_LIMIT):
    """GET ``url`` ignoring proxies (like ``_generations.Probe``); return (status, body bytes).

    Raise NoResponse when no HTTP response came back: ``inconclusive`` when the connection could not
    be made (see classify_connect_error), ``failed`` when the host accepted it and then misbehaved.
    """
    opener = urllib.request.build_opener(*_HANDLERS)
    try:
        resp = opener.open(url, timeout=timeout)
        try:
            return resp.status, resp.read(limit)
        finally:
            resp.close()
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read(limit) if exc.fp else b""
        except Exception:  # the status is what matters
            body = b""
        return exc.code, body
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, _ConnectError):
            raise NoResponse(*classify_connect_error(exc.reason.cause))
        raise NoResponse(FAILED, _after_connect(exc, timeout))
    except _ConnectError as exc:
        raise NoResponse(*classify_connect_error(exc.cause))
    except Exception as exc:  # reset, timeout or garbage after the host accepted the connection
        raise NoResponse(FAILED, _after_connect(exc, timeout))


class HealthProbe(gens.Probe):
    """Runs one probe once; returns (verdict, detail).

    container, systemd and command are the device health checks of ``_generations.Probe`` (a
    failure there is ``failed``); http and tcp are redone here to tell unreachable from failed.
    """

    def __call__(self, probe):
        try:
            return getattr(self, "_check_" + probe["type"])(probe)
        except Exception as exc:  # a probe must give a verdict, not a traceback
            return FAILED, "%s probe error: %s" % (probe["type"], exc)

    def _check_http(self, probe):
        url = probe["url"]
        try:
            status, body = http_get(url, probe["timeout"])
        except NoResponse as exc:
            return exc.verdict, "GET %s: %s" % (url, exc.reason)
        if status != probe["status"]:
            return FAILED, "GET %s returned %d, expected %d" % (url, status, probe["status"])
        text = body.decode("utf-8", "replace")
        if "body" in probe and probe["body"] not in text:
            return FAILED, "GET %s: body does not contain %r" % (url, probe["body"])
        if "body_regex" in probe and not re.search(probe["body_regex"], text):
            return FAILED, "GET %s: body does not match %r" % (url, probe["body_regex"])
        return PASSED, "GET %s returned %d" % (url, status)

    def _check_tcp(self, probe):
        host = "[%s]" % probe["host"] if ":" in probe["host"] else probe["host"]
        where = "connect %s:%d" % (host, probe["port"])
        try:
            sock = socket.create_connection((probe["host"], probe["port"]), timeout=probe["timeout"])
        except OSError as exc:
            verdict, reason = classify_connect_error(exc)
            return verdict, "%s: %s" % (where, reason)
        sock.close()
        return PASSED, "%s ok" % where

    def _check_metric(self, probe):
        url = probe["url"]
        try:
            status, body = http_get(url, probe["timeout"], METRIC_BODY_LIMIT)
        except NoResponse as exc:
            return exc.verdict, "GET %s: %s" % (url, exc.reason)
        if status != 200:
            return FAILED, "GET %s returned %d, expected 200" % (url, status)
        try:
            samples = parse_exposition(body.decode("utf-8", "replace"))
        except ValueError as exc:
            return FAILED, "GET %s: %s" % (url, exc)
        verdict, detail = evaluate_metric(probe, samples)
        return verdict, "%s (GET %s)" % (detail, url)

    def _check_container(self, probe):
        ok, detail = self._container(probe)
        return (PASSED if ok else FAILED), detail

    def _check_systemd(self, probe):
        ok, detail = self._systemd(probe)
        return (PASSED if ok else FAILED), detail

    def _check_command(self, probe):
        ok, detail = self._command(probe)
        return (PASSED if ok else FAILED), detail


# --------------------------------------------------------------------------------------------
# The gate (pure: probe, clock and sleep are injected)
# --------------------------------------------------------------------------------------------

def overall_verdict(verdicts):
    verdicts = list(verdicts)
    if FAILED in verdicts:
        return FAILED
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return PASSED


def _one_line(text):
    return " ".join(str(text).split())


def summarize(results, verdict, soak):
    """The task's one-line ``msg``."""
    if verdict == PASSED:
        count = len(results)
        return "%d probe%s passed%s" % (count, "" if count == 1 else "s",
                                        " (soak %s s)" % format_value(soak) if soak else "")
    bad = [r for r in results if r["verdict"] == verdict]
    first = bad[0]
    when = " during soak at %s s" % format_value(first["failed_at"]) if first.get("failed_at") is not None else ""
    also = " (also %s: %s)" % (verdict, ", ".join(r["name"] for r in bad[1:])) if len(bad) > 1 else ""
    return _one_line("probe %s %s%s: %s%s" % (first["name"], verdict, when, first["detail"], also))


def _wait_until(deadline, clock, sleep):
    delay = deadline - clock()
    if delay > 0:
        sleep(delay)


def run_gate(probes, soak=0, probe=None, clock=time.monotonic, sleep=time.sleep):
    """Run validated probes and return the gate's result (verdict, passed, probes, duration, msg).

    First pass: every probe is tried until it passes or ``retries`` attempts were made, waiting
    ``interval`` seconds after each attempt that did not pass; the last attempt gives the verdict.
    Probes are interleaved on one schedule, so this takes about as long as the slowest probe.

    Soak (``soak`` > 0 and no probe failed): every probe that passed is sampled again every
    ``interval`` seconds (at least SOAK_MIN_INTERVAL) until ``soak`` seconds after the last first
    pass; probes with the same interval are sampled in the same round. A failed sample fails its
    probe (``failed_at``, seconds from the start) and ends the gate, since the verdict cannot change
    any more; an unreachable sample makes the probe inconclusive and the soak goes on.
    """
    probe = probe or HealthProbe()
    start = clock()

    def elapsed():
        return round(clock() - start, 3)

    states = [{"probe": p, "due": start,
               "result": {"name": p["name"], "type": p["type"], "verdict": None, "attempts": 0, "samples": 0,
                          "detail": "", "passed_at": None, "failed_at": None}} for p in probes]

    pending = list(states)
    while pending:
        _wait_until(min(st["due"] for st in pending), clock, sleep)
        now = clock()
        for st in [st for st in pending if st["due"] <= now]:
            res = st["result"]
            verdict, detail = probe(st["probe"])
            res["attempts"] += 1
            res["detail"] = detail
            if verdict == PASSED:
                res.update(verdict=PASSED, passed_at=elapsed())
            elif res["attempts"] >= st["probe"]["retries"]:
                res["verdict"] = verdict
            else:
                st["due"] = clock() + st["probe"]["interval"]
                continue
            pending.remove(st)

    soaked = soak > 0 and not any(st["result"]["verdict"] == FAILED for st in states)
    if soaked:
        soak_end = clock() + soak
        sampling = [st for st in states if st["result"]["verdict"] == PASSED]
        for st in sampling:
            st["due"] = min(clock() + max(st["probe"]["interval"], SOAK_MIN_INTERVAL), soak_end)
        stop = False
        while sampling and not stop:
            _wait_until(min(st["due"] for st in sampling), clock, sleep)
            now = clock()
            for st in [st for st in sampling if st["due"] <= now]:
                res = st["result"]
                verdict, detail = probe(st["probe"])
                res["samples"] += 1
                if verdict == FAILED:
                    res.update(verdict=FAILED, failed_at=elapsed(), detail=detail)
                    stop = True
                    break
                if verdict == INCONCLUSIVE:
                    res.update(verdict=INCONCLUSIVE, detail="during soak at %s s: %s" % (elapsed(), detail))
                elif res["verdict"] == PASSED:
                    res["detail"] = detail
                if st["due"] >= soak_end:
                    sampling.remove(st)
                else:
                    st["due"] = min(now + max(st["probe"]["interval"], SOAK_MIN_INTERVAL), soak_end)

    results = [st["result"] for st in states]
    verdict = overall_verdict(r["verdict"] for r in results)
    return {
        "verdict": verdict,
        "passed": verdict == PASSED,
        "probes": results,
        "duration": elapsed(),
        "msg": summarize(results, verdict, soak if soaked else 0),
    }
