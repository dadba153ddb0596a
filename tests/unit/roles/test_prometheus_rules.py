# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The alert rules and the Grafana dashboards of roles/prometheus, checked offline with promtool.

- The rule file (templates/edgeops.rules.yml.j2, rendered with the role's defaults as the role renders it: Jinja's
  variable delimiters are ``[[ ]]``) passes ``promtool check rules`` and the ``promtool test rules`` unit tests of
  files/rules_tests/, which cover every alert both firing and not firing.
- Each alert has severity, site (and device, except the site-wide ones) and a summary and description; each `for:`
  is a role variable, documented in defaults/main.yml and meta/argument_specs.yml.
- Each dashboard of files/dashboards/ is JSON with its fixed uid, unique panel ids, the datasource and site
  variables, and every panel's queries parse (``promtool check rules`` on them as recording rules); the helper
  tests/support/promql.py, which the lab test uses against a real Prometheus, is tested on a stub HTTP server.

promtool comes with Debian's ``prometheus`` package; without it the tests that run it are skipped (failed with
CI=true, see conftest.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import jinja2
import pytest
import yaml

from conftest import require_tool

from ansible_collections.edgeops.fleet.plugins.module_utils._generations import textfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
ROLE = os.path.join(REPO, "roles", "prometheus")
RULES_TEMPLATE = os.path.join(ROLE, "templates", "edgeops.rules.yml.j2")
RULES_TESTS = sorted(glob.glob(os.path.join(ROLE, "files", "rules_tests", "*_test.yml")))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
import promql  # noqa: E402  (tests/support)

ALERTS = ("EdgeopsDeviceDown", "EdgeopsMetricsMissing", "EdgeopsMetricsStale", "EdgeopsHealthFailing",
          "EdgeopsSwitchPending", "EdgeopsRollback", "EdgeopsDeadmanRevert", "EdgeopsGenerationSkew",
          "EdgeopsRolloutStalled")
SITE_WIDE = ("EdgeopsGenerationSkew", "EdgeopsRolloutStalled")


def run_promtool(*args, cwd=None):
    proc = subprocess.run([require_tool("promtool")] + list(args), capture_output=True, text=True, timeout=120, cwd=cwd,
                          check=False)
    return proc.returncode, proc.stdout + proc.stderr


def load_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def defaults():
    return load_yaml(os.path.join(ROLE, "defaults", "main.yml"))


def render_rules(**overrides):
    """The rule file as the role writes it (template module with variable_start/end_string [[ ]])."""
    env = jinja2.Environment(variable_start_string="[[", variable_end_string="]]", undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    with open(RULES_TEMPLATE, encoding="utf-8") as handle:
        template = env.from_string(handle.read())
    variables = dict(defaults(), ansible_managed="Ansible managed")
    variables.update(overrides)
    return template.render(**variables)


@pytest.fixture(scope="module")
def rules():
    return yaml.safe_load(render_rules())


def alert_rules(rules):
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


# ---- the rule file -------------------------------------------------------------------------------------------------

def test_the_rule_file_has_every_alert_once(rules):
    names = [rule["alert"] for rule in alert_rules(rules)]
    assert sorted(names) == sorted(ALERTS)


def test_promtool_accepts_the_rule_file(tmp_path):
    path = tmp_path / "edgeops.rules.yml"
    path.write_text(render_rules())
    rc, out = run_promtool("check", "rules", str(path))
    assert rc == 0, out
    assert "SUCCESS: %d rules found" % len(ALERTS) in out, out


def test_promtool_accepts_the_rule_file_with_short_lab_durations(tmp_path):
    short = dict((name, "0s") for name in defaults() if name.startswith("prometheus_alert_") and name.endswith("_for"))
    path = tmp_path / "edgeops.rules.yml"
    path.write_text(render_rules(prometheus_alert_rollback_window="1m", prometheus_alert_metrics_stale_seconds=90,
                                 **short))
    rc, out = run_promtool("check", "rules", str(path))
    assert rc == 0, out
    assert "[1m])" in path.read_text() and "> 90" in path.read_text()


@pytest.mark.parametrize("test_file", RULES_TESTS, ids=os.path.basename)
def test_promtool_rule_unit_tests_pass(tmp_path, test_file):
    (tmp_path / "edgeops.rules.yml").write_text(render_rules())
    shutil.copy(test_file, str(tmp_path))
    rc, out = run_promtool("test", "rules", os.path.basename(test_file), cwd=str(tmp_path))
    assert rc == 0, out
    assert "SUCCESS" in out and "FAILED" not in out, out


def test_the_unit_tests_cover_every_alert_firing_and_not_firing():
    firing, quiet = set(), set()
    for test_file in RULES_TESTS:
        data = load_yaml(test_file)
        assert data["rule_files"] == ["edgeops.rules.yml"], test_file
        for group in data["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert len(RULES_TESTS) >= 3
    assert set(ALERTS) <= firing, "alerts without a firing test: %s" % sorted(set(ALERTS) - firing)
    assert set(ALERTS) <= quiet, "alerts without a not-firing test: %s" % sorted(set(ALERTS) - quiet)


def test_the_unit_tests_fail_when_a_rule_is_wrong(tmp_path):
    # The tests do look at the rules: with the skew alert's rollout condition inverted they fail.
    broken = render_rules().replace("unless on (site)", "and on (site)", 1)
    (tmp_path / "edgeops.rules.yml").write_text(broken)
    test_file = [path for path in RULES_TESTS if path.endswith("edgeops_sites_test.yml")][0]
    shutil.copy(test_file, str(tmp_path))
    rc, out = run_promtool("test", "rules", os.path.basename(test_file), cwd=str(tmp_path))
    assert rc != 0 and "FAILED" in out, out


def test_every_alert_has_severity_labels_and_annotations(rules):
    for rule in alert_rules(rules):
        assert rule["labels"]["severity"] in ("warning", "critical"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        text = rule["annotations"]["summary"] + rule["annotations"]["description"]
        assert "{{ $labels.site }}" in text, rule["alert"]
        if rule["alert"] not in SITE_WIDE:
            assert "{{ $labels.device }}" in text, rule["alert"]
            # site and device come from the scraped series: the expression must keep them
            assert "by (" not in rule["expr"], rule["alert"]
        else:
            assert "count by (site)" in rule["expr"], rule["alert"]
    rollback = [rule for rule in alert_rules(rules) if rule["alert"] == "EdgeopsRollback"][0]
    assert "{{ $labels.reason }}" in rollback["annotations"]["summary"]


def test_every_for_is_a_documented_role_variable():
    with open(RULES_TEMPLATE, encoding="utf-8") as handle:
        template = handle.read()
    fors = re.findall(r"^\s+for: (.*)$", template, re.M)
    assert len(fors) == len(ALERTS), fors
    specs = load_yaml(os.path.join(ROLE, "meta", "argument_specs.yml"))["argument_specs"]["main"]["options"]
    values = defaults()
    for value in fors:
        match = re.match(r"^\[\[ (prometheus_alert_\w+_for) \]\]$", value)
        assert match, value
        name = match.group(1)
        assert name in values and name in specs, name
        assert str(specs[name]["default"]) == str(values[name]), name
    for name in values:
        assert name in specs, "%s is in defaults/main.yml but not in meta/argument_specs.yml" % name


# ---- the dashboards ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboards():
    loaded = {}
    for path in promql.dashboard_files():
        with open(path, encoding="utf-8") as handle:
            loaded[os.path.basename(path)[:-len(".json")]] = json.load(handle)
    return loaded


def test_each_dashboard_is_json_with_its_fixed_uid(dashboards):
    assert sorted(dashboards) == sorted(promql.DASHBOARD_UIDS)
    for name, dashboard in dashboards.items():
        assert dashboard["uid"] == name
        assert dashboard["title"] and 36 <= dashboard["schemaVersion"] <= 41, name
        assert "id" not in dashboard or dashboard["id"] is None, name  # importable into any Grafana


def test_each_dashboard_has_the_datasource_and_site_variables(dashboards):
    for name, dashboard in dashboards.items():
        variables = dict((v["name"], v) for v in dashboard["templating"]["list"])
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        site = variables["site"]
        assert site["type"] == "query" and site["datasource"]["uid"] == "${datasource}", name
        assert site["definition"] == "label_values(edgeops_generation_current, site)", name
        assert site["query"]["query"] == site["definition"], name


def test_panel_ids_are_unique_and_every_panel_has_a_query(dashboards):
    for name, dashboard in dashboards.items():
        panels = list(promql.iter_panels(dashboard))
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids)), (name, ids)
        for panel in panels:
            if panel["type"] == "row":  # a row only groups panels
                assert not panel.get("targets"), (name, panel["title"])
                continue
            exprs = [target.get("expr", "").strip() for target in panel.get("targets", [])]
            assert exprs and all(exprs), (name, panel["title"])
            assert panel["datasource"]["uid"] == "${datasource}", (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", (name, panel["title"])


def test_the_dashboards_show_what_they_promise(dashboards):
    exprs = dict((uid, " ".join(expr for u, _t, expr in promql.panel_queries([dashboards[uid]])))
                 for uid in dashboards)
    for metric in ("up{", "edgeops_release_info", "edgeops_rollbacks_total", "edgeops_health_ok",
                   "edgeops_deadman_reverts_total", "edgeops_activation_last_duration_seconds"):
        assert metric in exprs["edgeops-fleet-overview"], metric
    for metric in ("edgeops_generation_pending", "edgeops_switches_total", "edgeops_rollbacks_total",
                   "edgeops_health_ok"):
        assert metric in exprs["edgeops-rollout"], metric


def test_every_panel_query_parses(tmp_path):
    queries = promql.panel_queries()
    assert len(queries) >= 20
    for _uid, _title, expr in queries:
        assert "$" not in expr and "[[" not in expr, expr
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps(promql.recording_rules(queries), indent=1))
    rc, out = run_promtool("check", "rules", str(path))
    assert rc == 0, out
    assert "SUCCESS: %d rules found" % len(queries) in out, out


# ---- tests/support/promql.py ---------------------------------------------------------------------------------------

def test_substitute_replaces_variables_and_time_macros():
    expr = 'sum(increase(x{site=~"$site", device=~"${device}", a=~"${b:regex}", c=~"[[c]]"}[$__rate_interval]))'
    assert promql.substitute(expr) == 'sum(increase(x{site=~".*", device=~".*", a=~".*", c=~".*"}[1m]))'
    assert promql.substitute(expr, {"site": "site01"}, "5m") == \
        'sum(increase(x{site=~"site01", device=~".*", a=~".*", c=~".*"}[5m]))'
    assert promql.substitute("x[$__range] / $__interval_s / ${__range_ms}", interval="2m") == "x[2m] / 120 / 120000"


class _TextfileServer(http.server.BaseHTTPRequestHandler):
    """Serves /metrics as node exporter would serve the agent's file (node exporter is not on this machine)."""
    text = ""

    def do_GET(self):  # noqa: N802  (http.server's name)
        data = self.text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_check_queries_against_a_real_prometheus_scraping_the_agents_metrics(tmp_path):
    """The real Prometheus (Debian's, as on a hub) scrapes what the agent's own renderer writes; every dashboard
    query must return series, a bad query and a Prometheus that does not answer must come back as errors."""
    binary = require_tool("prometheus")
    facts = textfile.snapshot(
        3, 3, 4, {3: {"release": "demo-1.1.0"}},
        {"counters": {"switches": {"activated": 3, "rolled_back": 1}},
         "last_activation": {"generation": 3, "at": 1.0, "seconds": 2.5, "ok": True}},
        [{"what": "health-rollback", "time": "2026-12-04T10:00:00Z"}],
        {"generation": 3, "at": 2.0, "results": [{"name": "web", "passed": True}]}, "3", time.time())
    _TextfileServer.text = textfile.render(facts)
    server = http.server.HTTPServer(("127.0.0.1", 0), _TextfileServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "edgeops-devices", "static_configs": [{
            "targets": ["127.0.0.1:%d" % server.server_port], "labels": {"site": "site01", "device": "dev01"}}]}]}))
    proc = subprocess.Popen([binary, "--config.file=%s" % config, "--storage.tsdb.path=%s" % (tmp_path / "data"),
                             "--web.listen-address=127.0.0.1:%d" % port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port
    try:
        # A range of 1m needs two scrapes in it: wait (with a deadline) until every query answers.
        deadline, results = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            results = promql.check_queries(url, timeout=2)
            if results and not promql.failures(results):
                break
            time.sleep(1)
        assert len(results) == len(promql.panel_queries())
        assert not promql.failures(results), promql.failures(results)
        assert all(uid in promql.DASHBOARD_UIDS and title for uid, title, _e, _c, _err in results)
        count, error = promql.query(url, "sum(")
        assert count == 0 and error.startswith("bad_data: "), error
        assert promql.query(url, "no_such_metric") == (0, None)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.shutdown()
        server.server_close()
    assert promql.query(url, "up", timeout=2)[1] is not None  # nothing answers there any more
