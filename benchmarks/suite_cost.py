# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the test suite costs: every step (a molecule scenario is a step), every pytest module, every stream.

    python benchmarks/suite_cost.py [--dir .suite/last] [--compare .suite/previous]

Reads what scripts/test.sh keeps of a run (its last table is this script's output):

  timings.tsv       kind, name, seconds, result, stream, command - one row per step (stream 0: not in a
                    stream), per stream and for the side-by-side part and the whole run; measured on a
                    monotonic clock (/proc/uptime), so a jump of the wall clock does not show
  junit/<step>.xml  each pytest step's testcases; a module's time is the sum of its testcases' times, each
                    setup + call + teardown (so a module-scoped fixture's lab counts, in the first and last test)
  logs/<step>.log   every step's whole output (not read here)

and prints the steps, the pytest modules and the streams, biggest first, the skipped tests with their reasons
and the failures. With --compare, every time has the other run's next to it, and the ratio (this / other).
Standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import collections
import os
import sys
import xml.etree.ElementTree as ET

FIELDS = ("kind", "name", "seconds", "result", "stream", "command")


def read_timings(path):
    """The rows of timings.tsv as dicts (seconds as float or None); comment lines are skipped."""
    rows = []
    with open(path) as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            values = (line.split("\t") + [""] * len(FIELDS))[:len(FIELDS)]
            row = dict(zip(FIELDS, values))
            try:
                row["seconds"] = float(row["seconds"]) if row["seconds"] else None
            except ValueError:
                row["seconds"] = None
            rows.append(row)
    return rows


def module_of(case):
    """(file, class or '') of a junit testcase: the ``file`` attribute (junit_family xunit1) or the classname."""
    classname = case.get("classname", "")
    path = case.get("file")
    if path:
        dotted = path[:-3].replace("/", ".") if path.endswith(".py") else path.replace("/", ".")
        cls = classname[len(dotted) + 1:] if classname.startswith(dotted + ".") else ""
        return path, cls
    parts = classname.split(".")
    cls = []
    while len(parts) > 1 and parts[-1][:1].isupper():  # TestSomething: a class in the module
        cls.insert(0, parts.pop())
    return "/".join(parts) + ".py", ".".join(cls)


def read_junit(path, step):
    """The testcases of one junit file: dicts of step, module, id, seconds, outcome and message."""
    cases = []
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        module, cls = module_of(case)
        test_id = "::".join(part for part in (module, cls.replace(".", "::"), case.get("name", "?")) if part)
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = child.get("message") or (child.text or "").strip()
                break
        try:
            seconds = float(case.get("time", "0") or 0)
        except ValueError:
            seconds = 0.0
        cases.append(dict(step=step, module=module, id=test_id, seconds=seconds, outcome=outcome,
                          message=" ".join(message.split())))
    return cases


def load(run_dir):
    """Everything this script prints about one run directory."""
    path = os.path.join(run_dir, "timings.tsv")
    if not os.path.isfile(path):
        raise IOError("%s: no timings.tsv (run scripts/test.sh first)" % run_dir)
    run = dict(dir=run_dir, steps=[], streams=[], parallel=None, total=None, info={}, selection=None, cases=[],
               junit_errors=[], cpu={})
    for row in read_timings(path):
        kind = row["kind"]
        if kind == "step":
            run["steps"].append(row)
        elif kind == "stream":
            run["streams"].append(row)
        elif kind == "parallel":
            run["parallel"] = row
        elif kind == "total":
            run["total"] = row
        elif kind == "info":
            run["info"][row["name"]] = (row["result"], row["command"])
        elif kind == "selection":
            run["selection"] = row["result"]
        elif kind == "cpu":
            run["cpu"][row["name"]] = row["seconds"]
    junit_dir = os.path.join(run_dir, "junit")
    junit_steps = set()
    if os.path.isdir(junit_dir):
        for name in sorted(os.listdir(junit_dir)):
            if not name.endswith(".xml"):
                continue
            junit_steps.add(name[:-4])
            try:
                run["cases"].extend(read_junit(os.path.join(junit_dir, name), name[:-4]))
            except (ET.ParseError, IOError, OSError) as exc:
                run["junit_errors"].append("%s: %s" % (name, exc))
    for row in run["steps"]:
        if row["command"].split()[:1] in (["pytest_modules"], ["unit_tests"]) and row["name"] not in junit_steps:
            run["junit_errors"].append("%s: no junit file (did pytest start?)" % row["name"])
    modules = collections.OrderedDict()
    for case in run["cases"]:
        entry = modules.setdefault((case["step"], case["module"]),
                                   dict(step=case["step"], module=case["module"], seconds=0.0,
                                        counts=collections.Counter()))
        entry["seconds"] += case["seconds"]
        entry["counts"][case["outcome"]] += 1
    run["modules"] = list(modules.values())
    return run


def fmt_seconds(value):
    return "-" if value is None else "%.1f" % value


def fmt_ratio(value, other):
    """this / other; not for times under a second (noise)."""
    if value is None or other is None or max(value, other) < 1.0 or other <= 0:
        return "-"
    return "x%.2f" % (value / other)


def what(row):
    words = row["command"].split()
    if words[:1] == ["molecule_scenario"]:
        return "molecule scenario " + " ".join(words[1:])
    if words[:1] == ["pytest_modules"]:
        return "pytest, %d path%s" % (len(words) - 1, "" if len(words) == 2 else "s")
    return row["command"]


class Table(object):
    """Rows of columns, printed aligned (numbers right, text left)."""

    def __init__(self, title, header, right):
        self.title = title
        self.header = header
        self.right = right
        self.rows = []

    def add(self, *cells):
        self.rows.append([str(cell) for cell in cells])

    def lines(self):
        widths = [max(len(row[i]) for row in [self.header] + self.rows) for i in range(len(self.header))]
        out = [self.title]
        for row in [self.header] + self.rows:
            cells = [cell.rjust(widths[i]) if self.right[i] else cell.ljust(widths[i]) for i, cell in enumerate(row)]
            out.append(("  " + "  ".join(cells)).rstrip())
        return out


def report(run, other=None):
    """The table, as lines."""
    total = run["total"]["seconds"] if run["total"] else None
    compare = other is not None
    out = []
    started = run["info"].get("started", ("", ""))
    finished = run["info"].get("finished", ("", ""))
    out.append("Suite cost of %s (started %s, %s; at the end %s)" % (
        run["dir"], started[0] or "?", started[1] or "?", finished[1] or "the run did not finish"))
    if compare:
        out.append("compared with %s (started %s)" % (other["dir"], other["info"].get("started", ("?",))[0]))
    if run["selection"]:
        out.append("only the entries: %s (EDGEOPS_SUITE_ONLY)" % run["selection"])

    def share(seconds):
        return "%.0f%%" % (100.0 * seconds / total) if total and seconds is not None else "-"

    def times(seconds, before):
        return [fmt_seconds(seconds)] + ([fmt_seconds(before), fmt_ratio(seconds, before)] if compare else [])

    time_cols = ["seconds"] + (["before", "ratio"] if compare else [])

    # Steps (a molecule scenario is a step of its own), biggest first.
    before = dict((row["name"], row["seconds"]) for row in other["steps"]) if compare else {}
    table = Table("\nSteps, biggest first (share: of the whole run's wall time; ctl CPU: CPU-seconds of the step's own "
                  "processes on the controller, not of the lab containers):",
                  ["step"] + time_cols + ["share", "ctl CPU", "result", "stream", "what"],
                  [False] + [True] * len(time_cols) + [True, True, False, True, False])
    for row in sorted(run["steps"], key=lambda r: -(r["seconds"] or 0)):
        table.add(row["name"], *(times(row["seconds"], before.get(row["name"])) + [
            share(row["seconds"]), fmt_seconds(run["cpu"].get(row["name"])), row["result"],
            row["stream"] if row["stream"] not in ("", "0") else "-", what(row)]))
    out.extend(table.lines())

    # Pytest modules, biggest first; and each pytest step's time outside its testcases (start-up, collection).
    if run["modules"]:
        before = dict((m["module"], m["seconds"]) for m in other["modules"]) if compare else {}
        table = Table("\nPytest modules, biggest first (a module: the sum of its tests' setup + call + teardown):",
                      ["module"] + time_cols + ["tests", "passed", "failed", "skipped", "step"],
                      [False] + [True] * len(time_cols) + [True] * 4 + [False])
        for module in sorted(run["modules"], key=lambda m: -m["seconds"]):
            counts = module["counts"]
            table.add(module["module"], *(times(module["seconds"], before.get(module["module"])) + [
                sum(counts.values()), counts["passed"], counts["failed"] + counts["error"], counts["skipped"],
                module["step"]]))
        step_seconds = dict((row["name"], row["seconds"]) for row in run["steps"])
        for step in sorted(set(m["step"] for m in run["modules"])):
            if step_seconds.get(step) is not None:
                inside = sum(m["seconds"] for m in run["modules"] if m["step"] == step)
                table.add("(%s: outside any test: start-up, collection)" % step,
                          *([fmt_seconds(max(0.0, step_seconds[step] - inside))] + ([""] * 2 if compare else [])
                            + [""] * 4 + [step]))
        out.extend(table.lines())

    # Streams, the side-by-side part, the whole run.
    if run["streams"]:
        before = dict((row["name"], row["seconds"]) for row in other["streams"]) if compare else {}
        table = Table("\nStreams (each runs its entries one after the other), longest first:",
                      ["stream"] + time_cols + ["entries"], [False] + [True] * len(time_cols) + [False])
        for row in sorted(run["streams"], key=lambda r: -(r["seconds"] or 0)):
            table.add(row["name"], *(times(row["seconds"], before.get(row["name"])) + [row["command"]]))
        if run["parallel"]:
            table.add(run["parallel"]["name"], *(times(run["parallel"]["seconds"], (other["parallel"] or {}).get(
                "seconds") if compare else None) + ["(from the start of the streams to the end of the last one)"]))
        out.extend(table.lines())

    # Skipped tests with their reasons; failures.
    skipped = [case for case in run["cases"] if case["outcome"] == "skipped"]
    out.append("\nSkipped tests: %d" % len(skipped))
    reasons = collections.OrderedDict()
    for case in skipped:
        reasons.setdefault(case["message"] or "(no reason given)", []).append(case["id"])
    for reason, ids in sorted(reasons.items(), key=lambda item: -len(item[1])):
        out.append("  %d x %s" % (len(ids), reason))
        for test_id in ids:
            out.append("      %s" % test_id)
    failed_steps = [row for row in run["steps"] if row["result"] != "passed"]
    failed_cases = [case for case in run["cases"] if case["outcome"] in ("failed", "error")]
    out.append("Failures: %d failed step(s), %d failed or erroring test(s)" % (len(failed_steps), len(failed_cases)))
    for row in failed_steps:
        out.append("  step %s: %s (log: %s)" % (row["name"], row["result"],
                                                os.path.join(run["dir"], "logs", row["name"] + ".log")))
    for case in failed_cases:
        out.append("  %s %s: %s" % (case["outcome"], case["id"], case["message"][:300]))
    for problem in run["junit_errors"]:
        out.append("  junit: %s" % problem)

    tests = collections.Counter(case["outcome"] for case in run["cases"])
    out.append("Tests: %d (%d passed, %d failed, %d errors, %d skipped)" % (
        len(run["cases"]), tests["passed"], tests["failed"], tests["error"], tests["skipped"]))
    if run["total"]:
        line = "Total: scripts/test.sh took %s s (monotonic clock); steps: %s" % (
            fmt_seconds(total), run["total"]["result"])
        if compare and other["total"]:
            before_total = other["total"]["seconds"]
            if other["selection"] == run["selection"]:
                line += "; before: %s s, %s" % (fmt_seconds(before_total), fmt_ratio(total, before_total))
            else:
                line += "; before: %s s (other entries: %s)" % (fmt_seconds(before_total), other["selection"] or "all")
        out.append(line)
    else:
        out.append("Total: the run did not finish (no total in timings.tsv); the steps so far add up to %s s" %
                   fmt_seconds(sum(row["seconds"] or 0 for row in run["steps"])))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dir", default=".suite/last", help="a run directory of scripts/test.sh (.suite/last)")
    parser.add_argument("--compare", metavar="DIR", help="another run directory, e.g. .suite/previous")
    args = parser.parse_args(argv)
    try:
        run = load(args.dir)
        other = load(args.compare) if args.compare else None
    except (IOError, OSError) as exc:
        sys.stderr.write("suite_cost.py: %s\n" % exc)
        return 2
    print("\n".join(report(run, other)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
