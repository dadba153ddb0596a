# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PromQL of the collection's Grafana dashboards, and a check of it against a real Prometheus.

Grafana cannot run on the project's machines, so a dashboard is checked by what it asks Prometheus: every
panel query, with the dashboard's variables replaced, must parse (unit tests: ``promtool check rules`` on
:func:`recording_rules`) and, in the lab, return series (:func:`check_queries`). Standard library only::

    from promql import check_queries, failures
    results = check_queries("http://127.0.0.1:%d" % port)          # every panel query of every dashboard
    assert failures(results) == [], failures(results)               # each returned >= 1 series, no error

Variables: ``$site``, ``${site}``, ``${site:regex}`` and ``[[site]]`` become ``values[name]`` when given, else
``.*`` (the dashboards use them only in ``=~`` matchers); Grafana's ``$__rate_interval``, ``$__interval``,
``$__range`` (and their ``_s``/``_ms`` forms) become ``interval`` (default ``1m``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request

#: Where the dashboards live (roles/prometheus/files/dashboards/*.json of this checkout).
DASHBOARD_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "roles",
                                              "prometheus", "files", "dashboards"))
#: The fixed uid of each dashboard the collection ships.
DASHBOARD_UIDS = ("edgeops-fleet-overview", "edgeops-rollout")

# Straight to the given address, whatever http_proxy says (the lab's Prometheus is on 127.0.0.1).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_GRAFANA_TIME = re.compile(r"\$(?:\{)?(__rate_interval|__interval|__range)(_ms|_s)?(?:\})?")
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def dashboard_files(directory=DASHBOARD_DIR):
    """The dashboard JSON files, sorted."""
    return sorted(glob.glob(os.path.join(directory, "*.json")))


def load_dashboards(directory=DASHBOARD_DIR):
    """Every dashboard, parsed: a list of dicts (json.load raises on a file that is not JSON)."""
    dashboards = []
    for path in dashboard_files(directory):
        with open(path, encoding="utf-8") as handle:
            dashboards.append(json.load(handle))
    return dashboards


def iter_panels(dashboard):
    """Every panel of a dashboard, also those nested in collapsed rows, in order."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", []) or []


def substitute(expr, values=None, interval="1m"):
    """``expr`` with Grafana's variables replaced: ``values[name]`` or ``.*``; time macros with ``interval``."""
    values = values or {}

    def time_macro(match):
        unit = match.group(2)
        if unit is None:
            return interval
        seconds = _duration_seconds(interval)
        return str(int(seconds * 1000)) if unit == "_ms" else str(int(seconds))

    def variable(match):
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, ".*")

    return _VARIABLE.sub(variable, _GRAFANA_TIME.sub(time_macro, expr))


def _duration_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("not a Prometheus duration: %r" % text)
    return sum(int(n) * units[u] for n, u in parts)


def panel_queries(dashboards=None, values=None, interval="1m"):
    """(dashboard uid, panel title, expr) of every panel target with an expr, variables replaced."""
    if dashboards is None:
        dashboards = load_dashboards()
    queries = []
    for dashboard in dashboards:
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []) or []:
                expr = (target.get("expr") or "").strip()
                if expr and not target.get("hide"):
                    queries.append((dashboard.get("uid"), panel.get("title"), substitute(expr, values, interval)))
    return queries


def recording_rules(queries):
    """A Prometheus rule file (as a dict; JSON is YAML) with each query as a recording rule, for
    ``promtool check rules``, which parses PromQL without a server."""
    rules = [{"record": "edgeops_dashboard_query_%d" % index, "expr": expr}
             for index, (_uid, _title, expr) in enumerate(queries)]
    return {"groups": [{"name": "edgeops-dashboard-queries", "rules": rules}]}


def query(prometheus_url, expr, timeout=10):
    """Run one instant query; returns (number of series, error or None)."""
    url = prometheus_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            body = json.load(exc)
        except ValueError:
            return 0, "HTTP %d" % exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return 0, "%s: %s" % (type(exc).__name__, exc)
    if body.get("status") != "success":
        return 0, "%s: %s" % (body.get("errorType", "error"), body.get("error", body))
    data = body.get("data", {})
    result = data.get("result")
    if data.get("resultType") in ("scalar", "string"):
        return 1, None
    return len(result or []), None


def check_queries(prometheus_url, values=None, interval="1m", dashboards=None, timeout=10):
    """Run every panel query of every dashboard against ``prometheus_url`` (e.g. ``http://127.0.0.1:9090``).

    Returns a list of (dashboard uid, panel title, expr, number of series, error or None), one per query.
    """
    results = []
    for uid, title, expr in panel_queries(dashboards, values, interval):
        count, error = query(prometheus_url, expr, timeout)
        results.append((uid, title, expr, count, error))
    return results


def failures(results):
    """The results of :func:`check_queries` that failed or returned no series."""
    return [result for result in results if result[4] is not None or result[3] == 0]
