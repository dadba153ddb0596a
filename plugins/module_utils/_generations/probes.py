# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one probe implementation: a device's local health checks and the health gate run the same ``Probe``.

A probe gives one of three verdicts. ``inconclusive`` means the target could not be reached at all (connect
timeout, no route to host or network, name resolution failure), so nothing can be said about the service;
``failed`` means the host answered and the answer was wrong (connection refused, wrong status or body, metric
out of bounds, container or unit not running, wrong exit code). HTTP requests ignore proxy settings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.request

from .metrics import evaluate_metric, format_value, parse_exposition
from .probe_schema import FAILED, INCONCLUSIVE, PASSED
from .sysio import run

# Connect errors that mean "the target could not be reached", as opposed to "it answered no".
UNREACHABLE_ERRNOS = frozenset(getattr(errno, name) for name in ("EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN",
                                                                 "ENETDOWN", "ETIMEDOUT") if hasattr(errno, name))
HTTP_BODY_LIMIT = 1 << 20
METRIC_BODY_LIMIT = 16 << 20


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


def _tagging_handler(connection_class, handler_class):
    """A urllib handler whose connections tag their connect errors (see _ConnectError)."""
    class Connection(connection_class):
        def __init__(self, *args, **kwargs):
            connection_class.__init__(self, *args, **kwargs)
            self._create_connection = _tag_connect_errors(self._create_connection)

    class Handler(handler_class):
        def do_open(self, http_class, req, **kwargs):
            return handler_class.do_open(self, Connection, req, **kwargs)
    return Handler


_HANDLERS = [urllib.request.ProxyHandler({}), _tagging_handler(http.client.HTTPConnection, urllib.request.HTTPHandler)]
if hasattr(http.client, "HTTPSConnection"):
    _HANDLERS.append(_tagging_handler(http.client.HTTPSConnection, urllib.request.HTTPSHandler))


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
    """GET ``url`` ignoring proxies; return (status, body bytes).

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


class Probe:
    """Runs one validated probe once; returns (verdict, detail). ``runner`` runs docker, systemctl and commands."""

    def __init__(self, runner=run, compose_project="edgeops"):
        self.run = runner
        self.project = compose_project

    def __call__(self, probe):
        try:
            return getattr(self, "_" + probe["type"])(probe)
        except Exception as exc:  # a probe must give a verdict, not a traceback
            return FAILED, "%s probe error: %s" % (probe["type"], exc)

    def _http(self, probe):
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

    def _tcp(self, probe):
        host = "[%s]" % probe["host"] if ":" in probe["host"] else probe["host"]
        where = "connect %s:%d" % (host, probe["port"])
        try:
            sock = socket.create_connection((probe["host"], probe["port"]), timeout=probe["timeout"])
        except OSError as exc:
            verdict, reason = classify_connect_error(exc)
            return verdict, "%s: %s" % (where, reason)
        sock.close()
        return PASSED, "%s ok" % where

    def _metric(self, probe):
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

    def _container(self, probe):
        rc, out, err = self.run(["docker", "ps", "-a", "-q",
                                 "--filter", "label=com.docker.compose.project=%s" % self.project,
                                 "--filter", "label=com.docker.compose.service=%s" % probe["service"]],
                                timeout=probe["timeout"])
        ids = out.split()
        if rc != 0 or not ids:
            return FAILED, "service %s has no container%s" % (probe["service"], (": " + err.strip()) if rc else "")
        rc, out, err = self.run(["docker", "inspect"] + ids, timeout=probe["timeout"])
        if rc != 0:
            return FAILED, "docker inspect: %s" % err.strip()
        for info in json.loads(out):
            state = info.get("State", {})
            health = (state.get("Health") or {}).get("Status")
            if state.get("Status") != "running" or health not in (None, "healthy"):
                return FAILED, "container %s is %s%s" % (info.get("Name", "?").lstrip("/"), state.get("Status"),
                                                         (" (%s)" % health) if health else "")
        return PASSED, "service %s: %d container(s) running and healthy" % (probe["service"], len(ids))

    def _systemd(self, probe):
        rc, out, _err = self.run(["systemctl", "is-active", probe["unit"]], timeout=probe["timeout"])
        return (PASSED if rc == 0 else FAILED), "unit %s is %s" % (probe["unit"], out.strip() or "unknown")

    def _command(self, probe):
        rc, _out, err = self.run(probe["argv"], timeout=probe["timeout"])
        ok = rc == probe["exit_code"]
        detail = "%s exited %d%s" % (" ".join(probe["argv"]), rc, "" if ok else (": " + err.strip()[-200:]))
        return (PASSED if ok else FAILED), detail


def run_health_checks(checks, probe, sleep=time.sleep):
    """A generation's local health checks, one after the other, each with its retries; return (all_ok, results).

    The device decides alone here (switch, rollback, boot), so an unreachable target counts as not passed.
    """
    results = []
    for check in checks:
        attempts = 0
        while True:
            attempts += 1
            verdict, detail = probe(check)
            if verdict == PASSED or attempts >= check["retries"]:
                break
            sleep(check["interval"])
        results.append({"name": check["name"], "type": check["type"], "passed": verdict == PASSED,
                        "attempts": attempts, "detail": detail})
    return all(r["passed"] for r in results), results
