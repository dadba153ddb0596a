# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Self-contained HTML pages a person reads: the report of a rollout and the status of the fleet.

Pure functions over plain data, standard library only (the rollout_record module writes the report beside the
rollout's JSON record; the ``edgeops.fleet.fleet_status_html`` filter renders the fleet status). A page is one
HTML document with its CSS inline: no script, no font, no image, nothing fetched, so it can be mailed, attached to
a ticket or opened from an AWX artifact as it is. Every value is HTML-escaped: device names, reasons and incidents
come from the field.

Pages stay readable at thousands of devices: what went wrong comes first with every detail, what went well is
counted per site (its device names in a collapsed ``<details>``), and long lists are capped with a line that says
how many more the JSON holds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import html
import json
import re

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Rollout outcomes, worst first: the order of the report's tables and of the terminal summary.
OUTCOME_ORDER = ("failed", "stage-failed", "rolled-back", "unreachable", "pending", "staged", "skipped-pinned",
                 "confirmed")
PROBLEMS = ("failed", "stage-failed", "rolled-back", "unreachable")
# The steps of a gated switch a device's reason starts with (plugins/plugin_utils/_switch.py).
GATES = ("health gate on the device", "health gate from the controller", "switch", "confirm", "refused")
_PROBE_RE = re.compile(r"\bprobe (\S+) (failed|inconclusive)\b")
# Caps of the long lists (the JSON holds them all).
DETAIL_LIMIT = 500
INCIDENT_LIMIT = 300
NAMES_LIMIT = 100

CSS = """
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#bc4c00;--mute:#57606a;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;margin:0;
padding:24px 32px;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line);
padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
.sub{color:var(--mute);margin:0 0 12px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
table{border-collapse:collapse;margin:4px 0 8px;width:100%}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.reason{max-width:560px;overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;color:#fff;
background:var(--mute);white-space:nowrap}
.nw,td b.mono,td span.mono{white-space:nowrap}
.s-completed,.s-confirmed,.s-passed,.s-ok{background:var(--ok)}
.s-aborted,.s-failed,.s-stage-failed,.s-rollback-failed,.s-unhealthy{background:var(--bad)}
.s-paused,.s-unreachable,.s-rolled-back,.s-drift,.s-pending-confirm{background:var(--warn)}
.s-running,.s-pending,.s-staged,.s-unknown,.s-not-checked,.s-skipped-pinned{background:var(--mute)}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:6px 12px;min-width:110px;background:#fff}
.card b{display:block;font-size:20px}.card span{color:var(--mute);font-size:12px}
.card.bad b{color:var(--bad)}.card.warn b{color:var(--warn)}.card.ok b{color:var(--ok)}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dl.kv dt{color:var(--mute)}dl.kv dd{margin:0;overflow-wrap:anywhere}
.tl{margin:8px 0;border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.tl-row{display:grid;grid-template-columns:170px 1fr 400px;gap:8px;align-items:center;min-height:20px}
.tl-label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tl-note{color:var(--mute);font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.track{position:relative;height:14px;background:var(--bg);border-radius:3px}
.bar{position:absolute;top:1px;height:12px;border-radius:2px;background:var(--ok);min-width:3px}
.bar.stage{background:#8c959f}.bar.bad{background:var(--bad)}.bar.warn{background:var(--warn)}
.bar.stop{outline:2px solid #1f2328}
.axis{position:relative;height:16px;color:var(--mute);font-size:11px}
.axis span{position:absolute;top:0;transform:translateX(-50%);white-space:nowrap}
.axis span.first{transform:none}.axis span.last{transform:translateX(-100%)}
details{margin:4px 0}summary{cursor:pointer;color:#0969da}
.names{font-size:12.5px;color:#1f2328;overflow-wrap:anywhere}
.more{color:var(--mute);font-style:italic}
.foot{margin-top:32px;color:var(--mute);font-size:12px;border-top:1px solid var(--line);padding-top:8px}
"""


class PageError(ValueError):
    """The data cannot make a page (not the shape it should have)."""


def esc(value):
    """Any value as HTML text: None is empty, everything else is str()'d and escaped (quotes too)."""
    if value is None:
        return ""
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def parse_time(value):
    try:
        return datetime.datetime.strptime(str(value), TIME_FORMAT)
    except (TypeError, ValueError):
        return None


def _seconds(start, end):
    a, b = parse_time(start), parse_time(end)
    return int((b - a).total_seconds()) if a and b else None


def _duration(seconds):
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds < 120:
        return "%d s" % seconds
    if seconds < 7200:
        return "%d min %02d s" % (seconds // 60, seconds % 60)
    return "%d h %02d min" % (seconds // 3600, (seconds % 3600) // 60)


def _clock(value):
    """HH:MM:SS of a record time (the date is in the page's header), or the value as it is."""
    moment = parse_time(value)
    return moment.strftime("%H:%M:%S") if moment else str(value or "?")


def _badge(state):
    state = str(state or "unknown")
    return '<span class="badge s-%s">%s</span>' % (esc(re.sub(r"[^a-z0-9-]", "-", state.lower())), esc(state))


def _cards(items):
    """items: (label, value, tone) with tone ok|bad|warn|''."""
    return '<div class="cards">%s</div>' % "".join(
        '<div class="card %s"><b>%s</b><span>%s</span></div>' % (esc(tone), esc(value), esc(label))
        for label, value, tone in items)


def _table(headers, rows, numeric=()):
    """rows: lists of cells already HTML (use esc()); numeric: indexes of right-aligned columns."""
    head = "".join('<th%s>%s</th>' % (' class="num"' if i in numeric else "", esc(h)) for i, h in enumerate(headers))
    body = "".join("<tr>%s</tr>" % "".join(
        '<td%s>%s</td>' % (' class="num"' if i in numeric else "", cell) for i, cell in enumerate(row)) for row in rows)
    return "<table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>" % (head, body)


def _more(shown, total, where):
    if total <= shown:
        return ""
    return '<p class="more">... and %d more, see %s</p>' % (total - shown, esc(where))


def _names(names, limit=None):
    names = sorted(names)
    shown = names if limit is None else names[:limit]
    text = ", ".join(esc(n) for n in shown)
    if len(shown) < len(names):
        text += ' <span class="more">... and %d more</span>' % (len(names) - len(shown))
    return '<div class="names mono">%s</div>' % text


def document(title, body, generated=None):
    """One self-contained HTML page: inline CSS, no script, nothing fetched (a CSP that forbids it too)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>%s</title><style>%s</style></head>\n<body>\n%s\n<p class=\"foot\">Written by edgeops.fleet%s. "
            "A self-contained page: no script, nothing fetched.</p>\n</body></html>\n"
            % (esc(title), CSS, body, (" at " + esc(generated)) if generated else ""))


# ---- the rollout report --------------------------------------------------------------------------------

def gate_of(reason):
    """(gate, probe) a device's reason names: the step of the gated switch that failed and the first probe that
    failed in it ('' when the reason does not say)."""
    text = str(reason or "")
    gate = ""
    for candidate in GATES:
        if text.startswith(candidate):
            gate = candidate
            break
    if not gate and text.startswith("unreachable (last step: "):
        gate = "unreachable at " + text[len("unreachable (last step: "):].split(")", 1)[0]
    match = _PROBE_RE.search(text)
    return gate, (match.group(1) if match else "")


def _attempt_of(attempts, started):
    """Index of the attempt a wave entry belongs to: the last attempt that started at or before it."""
    index = 0
    for i, attempt in enumerate(attempts):
        if str(attempt.get("started") or "") <= str(started or ""):
            index = i
    return index


def timeline(record):
    """The rows of the rollout's timeline: per attempt its stage, then per wave its batches as bars.

    Each row: {label, note, bars: [{left, width (percent of the rollout's span), start, end, tone, title}]};
    with the span's start and end (record times) and its length in seconds. Bars are scaled to the span from the
    first attempt's start (or the first wave's) to the last finish.
    """
    attempts = record.get("attempts") or []
    waves = record.get("waves") or []
    times = [parse_time(a.get("started")) for a in attempts] + [parse_time(w.get("started")) for w in waves]
    ends = [parse_time(a.get("finished")) for a in attempts] + [parse_time(w.get("finished")) for w in waves]
    times = [t for t in times if t]
    ends = [t for t in ends + times if t]
    if not times:
        return {"rows": [], "start": None, "end": None, "seconds": 0}
    origin, last = min(times), max(ends)
    span = max((last - origin).total_seconds(), 0.0)

    def place(start, end):
        a, b = parse_time(start) or origin, parse_time(end) or parse_time(start) or origin
        if span <= 0:
            return 0.0, 100.0 if b > a else 0.0
        left = max(0.0, min(100.0, (a - origin).total_seconds() * 100.0 / span))
        width = max(0.0, min(100.0 - left, (b - a).total_seconds() * 100.0 / span))
        return round(left, 3), round(width, 3)

    rows = []
    groups = []  # [(attempt index, wave, [entries])] in record order; consecutive entries of one wave together
    for entry in waves:
        key = (_attempt_of(attempts, entry.get("started")), entry.get("wave"))
        if groups and groups[-1][:2] == key:
            groups[-1][2].append(entry)
        else:
            groups.append((key[0], key[1], [entry]))
    for index, attempt in enumerate(attempts):
        own = [g for g in groups if g[0] == index]
        first_wave = min([g[2][0].get("started") for g in own if g[2][0].get("started")] or [attempt.get("finished")])
        if attempt.get("started") and first_wave and attempt.get("action") != "rollback":
            left, width = place(attempt.get("started"), first_wave)
            rows.append({"label": "attempt %d: %s, stage" % (index + 1, attempt.get("action") or "start"),
                         "note": "%s - %s (%s)" % (_clock(attempt.get("started")), _clock(first_wave),
                                                   _duration(_seconds(attempt.get("started"), first_wave))),
                         "bars": [{"left": left, "width": width, "tone": "stage", "start": attempt.get("started"),
                                   "end": first_wave, "title": "stage"}]})
        elif attempt.get("action") == "rollback":
            left, width = place(attempt.get("started"), attempt.get("finished"))
            rows.append({"label": "attempt %d: rollback" % (index + 1),
                         "note": "%s - %s" % (_clock(attempt.get("started")), _clock(attempt.get("finished"))),
                         "bars": [{"left": left, "width": width, "tone": "warn", "start": attempt.get("started"),
                                   "end": attempt.get("finished"), "title": "rollback"}]})
        for _index, wave, entries in own:
            bars, devices, totals = [], 0, {}
            for entry in entries:
                left, width = place(entry.get("started"), entry.get("finished"))
                counts = entry.get("counts") or {}
                tone = "bad" if counts.get("failed") else ("warn" if counts.get("unreachable") else "")
                if entry.get("decision") not in (None, "continue"):
                    tone += " stop"
                devices += len(entry.get("devices") or [])
                for key, value in counts.items():
                    totals[key] = totals.get(key, 0) + (value or 0)
                title = "wave %s%s: %s - %s, %d device(s), %s%s" % (
                    wave, (" batch " + str(entry["batch"])) if entry.get("batch") else "", _clock(entry.get("started")),
                    _clock(entry.get("finished")), len(entry.get("devices") or []),
                    ", ".join("%s %d" % (k, v) for k, v in sorted(counts.items()) if v) or "nothing done",
                    (" -> " + entry["decision"]) if entry.get("decision") not in (None, "continue") else "")
                bars.append({"left": left, "width": width, "tone": tone.strip(), "start": entry.get("started"),
                             "end": entry.get("finished"), "title": title})
            start, end = entries[0].get("started"), entries[-1].get("finished")
            label = "wave %s" % wave + (" (canary)" if wave is not None and wave == record.get("canary_wave") else "")
            if len(entries) > 1:
                label += ", %d batches" % len(entries)
            decisions = [e.get("decision") for e in entries if e.get("decision") not in (None, "continue")]
            rows.append({"label": label, "bars": bars,
                         "note": "%s - %s (%s), %d device(s): %s%s" % (
                             _clock(start), _clock(end), _duration(_seconds(start, end)), devices,
                             ", ".join("%s %d" % (k, v) for k, v in sorted(totals.items()) if v) or "nothing done",
                             (" -> " + decisions[-1]) if decisions else "")})
    return {"rows": rows, "start": origin.strftime(TIME_FORMAT), "end": last.strftime(TIME_FORMAT),
            "seconds": int(span)}


def _timeline_html(record):
    line = timeline(record)
    if not line["rows"]:
        return '<p class="sub">No wave ran yet.</p>'
    out = ['<div class="tl">']
    ticks = []
    origin = parse_time(line["start"])
    for i, pct in enumerate((0, 25, 50, 75, 100)):
        moment = origin + datetime.timedelta(seconds=line["seconds"] * pct / 100.0)
        ticks.append('<span class="%s" style="left:%d%%">%s</span>' % (
            "first" if i == 0 else ("last" if pct == 100 else ""), pct, esc(moment.strftime("%H:%M:%S"))))
    out.append('<div class="tl-row"><div class="tl-label"><b>UTC</b></div><div class="axis">%s</div>'
               '<div class="tl-note">%s in all</div></div>' % ("".join(ticks), esc(_duration(line["seconds"]))))
    for row in line["rows"]:
        bars = "".join('<div class="bar %s" style="left:%.3f%%;width:%.3f%%" title="%s"></div>' % (
            esc(seg["tone"]), seg["left"], seg["width"], esc(seg["title"])) for seg in row["bars"])
        out.append('<div class="tl-row"><div class="tl-label" title="%s">%s</div><div class="track">%s</div>'
                   '<div class="tl-note" title="%s">%s</div></div>' % (
                       esc(row["label"]), esc(row["label"]), bars, esc(row["note"]), esc(row["note"])))
    out.append("</div>")
    return "".join(out)


def _approval_html(approval):
    if not approval:
        return "none recorded (a rollback needs none)"
    if approval.get("waived"):
        return "waived (environment %s)" % esc(approval.get("environment") or "?")
    if approval.get("via") == "awx-workflow":
        return "approval node of AWX workflow job %s (%s), launched by %s" % (
            esc(approval.get("workflow_job_id")), esc(approval.get("workflow_job_name") or "?"),
            esc(approval.get("launched_by") or "?"))
    return "%s at %s (environment %s)" % (esc(approval.get("approver") or "?"), esc(approval.get("approved_at") or "?"),
                                          esc(approval.get("environment") or "?"))


def _short(reason, said):
    """An incident's reason without the device's reason it repeats (shown in the row already)."""
    reason, said = str(reason or ""), str(said or "")
    if said:
        reason = reason.replace(": " + said, "").replace(said, "")
    return (": " + esc(reason)) if reason.strip() else ""


def _device_order(devices):
    rank = dict((o, i) for i, o in enumerate(OUTCOME_ORDER))
    return sorted(devices, key=lambda n: (rank.get(devices[n].get("outcome"), len(rank)),
                                          devices[n].get("wave") if isinstance(devices[n].get("wave"), int) else 1 << 30, n))


def _generation(d):
    if d.get("generation") is None:
        return "-"
    text = "%s &rarr; %s" % (esc(d.get("previous")), esc(d.get("generation")))
    if d.get("current") is not None and d.get("current") != d.get("generation"):
        text += " (runs %s)" % esc(d.get("current"))
    return text


def rollout_report_html(record, record_path="", generated=None):
    """The rollout's report page from its record (the dict plugins/module_utils/_rollout.py keeps)."""
    if not isinstance(record, dict) or not isinstance(record.get("devices"), dict):
        raise PageError("a rollout record must be a mapping with devices, got %r" % type(record).__name__)
    devices = record["devices"]
    incidents = [i for i in record.get("incidents") or [] if isinstance(i, dict)]
    by_device = {}
    for inc in incidents:
        by_device.setdefault(inc.get("device"), []).append(inc)
    where = ("the JSON record " + record_path) if record_path else "the JSON record"
    counts = {}
    for d in devices.values():
        counts[d.get("outcome")] = counts.get(d.get("outcome"), 0) + 1
    status = record.get("status") or "unknown"
    attempts = record.get("attempts") or []
    out = ['<h1>Rollout %s of release %s %s</h1>' % (esc(record.get("id")), esc(record.get("release")), _badge(status))]
    if record.get("reason"):
        out.append('<p class="sub"><b>Reason:</b> %s</p>' % esc(record["reason"]))
    span = timeline(record)
    policy = record.get("policy") or {}
    out.append('<dl class="kv">')
    for key, value in (
            ("Release", esc(record.get("release"))),
            ("Rollout id", esc(record.get("id"))),
            ("Status", "%s%s" % (esc(status), (" - " + esc(record["reason"])) if record.get("reason") else "")),
            ("Approved", _approval_html(record.get("approval"))),
            ("Manifest", "%s <span class=\"mono\">sha256 %s</span>" % (
                esc(record.get("manifest")), esc(str(record.get("manifest_sha256") or "")[:16]))),
            ("Created", esc(record.get("created"))),
            ("Attempts", "; ".join("%s %s - %s" % (esc(a.get("action")), esc(a.get("started")), esc(a.get("finished") or "running"))
                                   for a in attempts) or "none"),
            ("Span", "%s - %s (%s)" % (esc(span["start"] or "?"), esc(span["end"] or "?"), esc(_duration(span["seconds"])))),
            ("Policy", esc("waves %s, soak %s s, failure threshold %s%% after %s executed, unreachable: %s, environment %s" % (
                policy.get("wave_plan"), policy.get("soak"), policy.get("failure_threshold"), policy.get("min_executed"),
                policy.get("unreachable"), policy.get("environment")))),
            ("Record", esc(record_path or "-"))):
        out.append("<dt>%s</dt><dd>%s</dd>" % (esc(key), value))
    out.append("</dl>")
    cards = [("devices", len(devices), "")]
    for outcome in OUTCOME_ORDER:
        if counts.get(outcome):
            cards.append((outcome, counts[outcome], "bad" if outcome in ("failed", "stage-failed") else (
                "warn" if outcome in PROBLEMS else ("ok" if outcome == "confirmed" else ""))))
    cards.append(("incidents", len(incidents), "warn" if incidents else ""))
    out.append(_cards(cards))

    out.append('<h2>Timeline</h2>')
    out.append(_timeline_html(record))

    order = _device_order(devices)
    problems = [n for n in order if devices[n].get("outcome") in PROBLEMS]
    out.append('<h2 id="problems">Failed, rolled back, unreachable (%d)</h2>' % len(problems))
    if problems:
        rows = []
        for name in problems[:DETAIL_LIMIT]:
            d = devices[name]
            own = by_device.get(name, [])
            # A resume or a rollback clears the device's reason: the gate that failed is then in its incidents.
            gated = [i.get("reason") for i in own if i.get("kind") in ("gate-failed", "stage-failed", "unreachable")]
            gate, probe = gate_of(d.get("reason") or (gated[-1] if gated else ""))
            rows.append([
                '<b class="mono">%s</b>' % esc(name), esc(d.get("site") or "-"), esc(d.get("wave")), _badge(d.get("outcome")),
                esc(gate or ("stage" if d.get("outcome") == "stage-failed" else "-")), '<span class="mono">%s</span>' % esc(probe) if probe else "-",
                '<span class="reason">%s</span>' % esc(d.get("reason") or "-"), _generation(d),
                "<br>".join('<span class="nw">%s %s</span>%s' % (esc(_clock(i.get("time"))), esc(i.get("kind")), _short(
                    i.get("reason"), d.get("reason"))) for i in own[-5:]) + ((" <span class=\"more\">(+%d)</span>" % (len(own) - 5)) if len(own) > 5 else "")])
        out.append(_table(["Device", "Site", "Wave", "Outcome", "Failed gate", "Probe", "Why", "Generation", "Incidents"],
                          rows, numeric=(2,)))
        out.append(_more(DETAIL_LIMIT, len(problems), where))
    else:
        out.append('<p class="sub">None.</p>')

    # Per site: every outcome counted; names of the devices that are fine in a collapsed list.
    sites = {}
    for name in order:
        sites.setdefault(str(devices[name].get("site") or "-"), []).append(name)
    present = [o for o in OUTCOME_ORDER if counts.get(o)] + sorted(str(o) for o in counts if o not in OUTCOME_ORDER)
    out.append('<h2 id="sites">Per site (%d)</h2>' % len(sites))
    rows = []
    for site in sorted(sites):
        names = sites[site]
        per = {}
        for n in names:
            per[devices[n].get("outcome")] = per.get(devices[n].get("outcome"), 0) + 1
        rows.append([esc(site), str(len(names))] + [str(per.get(o, 0) or "") for o in present])
    out.append(_table(["Site", "Devices"] + present, rows, numeric=tuple(range(1, len(present) + 2))))

    rest = [n for n in order if devices[n].get("outcome") not in PROBLEMS]
    confirmed = [n for n in rest if devices[n].get("outcome") == "confirmed"]
    others = [n for n in rest if devices[n].get("outcome") != "confirmed"]
    if others:
        out.append('<h2 id="unfinished">Not switched (%d)</h2>' % len(others))
        out.append(_table(["Outcome", "Devices"], [
            [_badge(o), _names([n for n in others if devices[n].get("outcome") == o], NAMES_LIMIT * 5)]
            for o in [o for o in present if o not in PROBLEMS and o != "confirmed"]]))
    out.append('<h2 id="confirmed">Confirmed (%d)</h2>' % len(confirmed))
    if not confirmed:
        out.append('<p class="sub">None.</p>')
    elif len(confirmed) <= NAMES_LIMIT:
        out.append(_table(["Device", "Site", "Wave", "Generation"], [
            ['<span class="mono">%s</span>' % esc(n), esc(devices[n].get("site") or "-"), esc(devices[n].get("wave")),
             _generation(devices[n])] for n in confirmed], numeric=(2,)))
    else:
        for site in sorted(sites):
            names = [n for n in sites[site] if devices[n].get("outcome") == "confirmed"]
            if names:
                out.append("<details><summary>%s: %d confirmed</summary>%s</details>" % (esc(site), len(names),
                                                                                         _names(names)))

    out.append('<h2 id="incidents">Incidents (%d)</h2>' % len(incidents))
    if incidents:
        shown = incidents[-INCIDENT_LIMIT:]
        if len(shown) < len(incidents):
            out.append('<p class="more">The latest %d; %d older ones are in %s.</p>' % (
                len(shown), len(incidents) - len(shown), esc(where)))
        out.append(_table(["Time", "Device", "Site", "Kind", "Generation", "Reason"], [
            ['<span class="nw">%s</span>' % esc(i.get("time")), '<span class="mono">%s</span>' % esc(i.get("device")),
             esc(i.get("site") or "-"),
             _badge(i.get("kind")), esc(i.get("generation")), '<span class="reason">%s</span>' % esc(i.get("reason"))]
            for i in shown]))
    else:
        out.append('<p class="sub">None.</p>')
    if record.get("lock_breaks"):
        out.append('<h2>Broken locks</h2>')
        out.append(_table(["Broken at", "By", "Lock of"], [
            [esc(b.get("broken_at")), esc(", ".join("%s %s" % kv for kv in sorted((b.get("by") or {}).items()))),
             esc((b.get("lock") or {}).get("rollout"))] for b in record["lock_breaks"]]))
    return document("Rollout %s (%s): %s" % (record.get("id"), record.get("release"), status), "\n".join(out), generated)


# ---- the fleet status ----------------------------------------------------------------------------------

FLEET_FORMAT = 1
INCIDENTS_PER_DEVICE = 5
# Fleets of up to this many devices show every site open on the fleet status page.
OPEN_SITES_UP_TO = 60


def _health(result):
    """A device's health from the registered result of ``edgeops-gen health`` (JSON list of checks on stdout)."""
    if not isinstance(result, dict) or result.get("skipped") or not result:
        return {"state": "not-checked", "failed": [], "detail": ""}
    if result.get("unreachable"):
        return {"state": "unknown", "failed": [], "detail": str(result.get("msg") or "unreachable")}
    rc = result.get("rc")
    try:
        checks = json.loads(result.get("stdout") or "null")
    except ValueError:
        checks = None
    if not isinstance(checks, list):
        detail = (result.get("stderr") or result.get("msg") or "no answer").strip()
        return {"state": "unknown", "failed": [], "detail": "%s (rc %s)" % (detail[:300], rc)}
    failed = [{"name": str(c.get("name")), "detail": str(c.get("detail") or "")[:300]}
              for c in checks if isinstance(c, dict) and not c.get("passed")]
    return {"state": "failed" if failed or rc not in (0, None) else "passed", "failed": failed,
            "detail": "%d check(s), %d failed" % (len(checks), len(failed))}


def fleet_status_device(name, site, gens, health=None):
    """One device's status from what it registered: ``gens`` the result of edgeops.fleet.generation_info (or of an
    unreachable/failed task), ``health`` that of ``edgeops-gen health`` (or None)."""
    gens = gens if isinstance(gens, dict) else {}
    entry = {"name": str(name), "site": str(site or "default"), "reachable": True, "error": "", "release": None,
             "current": None, "confirmed": None, "pending": None, "deadline": None, "since": None, "since_what": "",
             "drift": [], "health": {"state": "not-checked", "failed": [], "detail": ""}, "incidents": [],
             "incident_count": 0, "generations": 0, "boot_failures": {}}
    if not gens or gens.get("unreachable") or gens.get("skipped"):
        entry.update(reachable=False, error=str((gens.get("msg") or "unreachable") if gens else "not gathered"))
        entry["health"] = {"state": "unknown", "failed": [], "detail": "unreachable"}
        return entry
    if gens.get("failed"):
        entry.update(error=str(gens.get("msg") or "generation_info failed"))
        entry["health"] = _health(health)
        return entry
    listing = gens.get("generations") or []
    current = gens.get("current")
    own = [g for g in listing if isinstance(g, dict) and g.get("id") == current]
    gen = own[0] if own else {}
    # Since when the current generation runs: its confirm (or switch) time when the listing has it, else when it
    # was staged (generation_info's listing gives the manifest's "created").
    since, what = None, ""
    for key, label in (("confirmed_at", "confirmed"), ("switched_at", "switched"), ("created", "staged")):
        if gen.get(key):
            since, what = gen[key], label
            break
    incidents = [i for i in gens.get("incidents") or [] if isinstance(i, dict)]
    entry.update(release=gen.get("release"), current=current, confirmed=gens.get("confirmed"),
                 pending=gens.get("pending"), deadline=gen.get("deadline"), since=since, since_what=what,
                 drift=[str(p) for p in gens.get("drift") or []], incidents=incidents[-INCIDENTS_PER_DEVICE:],
                 incident_count=len(incidents), generations=len(listing), boot_failures=gens.get("boot_failures") or {},
                 health=_health(health))
    return entry


def device_problems(d):
    """What needs a look on a device, worst first (empty: nothing)."""
    out = []
    if not d.get("reachable", True):
        out.append("unreachable")
    elif d.get("error"):
        out.append("error")
    if d.get("health", {}).get("state") == "failed":
        out.append("unhealthy")
    if d.get("pending") is not None:
        out.append("pending-confirm")
    if d.get("drift"):
        out.append("drift")
    if d.get("reachable", True) and not d.get("error") and d.get("current") is None:
        out.append("no-generation")
    return out


def fleet_status_data(devices, targets="", generated=None):
    """The fleet status document from device entries (fleet_status_device): per site, counts, releases."""
    devices = sorted((d for d in devices if isinstance(d, dict)), key=lambda d: (d.get("site") or "", d.get("name") or ""))
    sites = {}
    releases = {}
    counts = {"devices": len(devices), "unreachable": 0, "unhealthy": 0, "healthy": 0, "drift": 0, "pending": 0,
              "errors": 0}
    for d in devices:
        sites.setdefault(d.get("site") or "default", []).append(d.get("name"))
        if not d.get("reachable", True):
            counts["unreachable"] += 1
            continue
        if d.get("error"):
            counts["errors"] += 1
        state = (d.get("health") or {}).get("state")
        if state == "failed":
            counts["unhealthy"] += 1
        elif state == "passed":
            counts["healthy"] += 1
        if d.get("drift"):
            counts["drift"] += 1
        if d.get("pending") is not None:
            counts["pending"] += 1
        key = "%s" % (d.get("release") or "none")
        releases[key] = releases.get(key, 0) + 1
    return {"format": FLEET_FORMAT, "generated": generated or "", "targets": targets, "counts": counts,
            "releases": releases, "sites": dict((s, sorted(n)) for s, n in sites.items()),
            "devices": dict((d["name"], d) for d in devices)}


def _device_row(d):
    health = d.get("health") or {}
    state = "unreachable" if not d.get("reachable", True) else (health.get("state") or "unknown")
    gen = "-"
    if d.get("current") is not None or d.get("confirmed") is not None:
        gen = "%s / %s" % (esc(d.get("current")), esc(d.get("confirmed")))
        if d.get("pending") is not None:
            gen += ' <span class="badge s-pending-confirm">pending %s until %s</span>' % (
                esc(d.get("pending")), esc(d.get("deadline") or "?"))
    why = []
    if d.get("error"):
        why.append(esc(d["error"]))
    for f in health.get("failed") or []:
        why.append("check <b class=\"mono\">%s</b>: %s" % (esc(f.get("name")), esc(f.get("detail"))))
    if state == "unknown" and health.get("detail"):
        why.append(esc(health["detail"]))
    incidents = "<br>".join("%s %s: %s" % (esc(i.get("time")), esc(i.get("what")), esc(i.get("reason")))
                            for i in (d.get("incidents") or [])[-3:])
    if d.get("incident_count", 0) > 3:
        incidents += ' <span class="more">(%d in all)</span>' % d["incident_count"]
    problems = device_problems(d)
    return ['<b class="mono">%s</b>' % esc(d.get("name")), esc(d.get("release") or "-"), gen,
            '<span class="nw">%s</span>%s' % (esc(str(d.get("since") or "-").replace("T", " ").rstrip("Z")),
                                              (" <span class=\"more\">(%s)</span>" % esc(d["since_what"]))
                                              if d.get("since_what") else ""),
            _badge(state) + ("<br>" + "<br>".join(why) if why else ""),
            "<br>".join(esc(p) for p in (d.get("drift") or [])[:5]) + (
                ' <span class="more">(+%d)</span>' % (len(d["drift"]) - 5) if len(d.get("drift") or []) > 5 else "") or "-",
            incidents or "-", " ".join(_badge(p) for p in problems) or _badge("ok")]


DEVICE_HEADERS = ["Device", "Release", "Generation current / confirmed", "Since", "Health", "Drift", "Last incidents",
                  "Needs a look"]


def fleet_status_html(data, generated=None):
    """The fleet status page from fleet_status_data's document."""
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        raise PageError("fleet status data must be a mapping with devices, got %r" % type(data).__name__)
    devices = data["devices"]
    counts = data.get("counts") or {}
    out = ['<h1>Fleet status</h1><p class="sub">%d device(s) in %d site(s)%s, gathered %s (read-only)</p>' % (
        len(devices), len(data.get("sites") or {}), (", targets " + esc(data["targets"])) if data.get("targets") else "",
        esc(data.get("generated") or generated or "?"))]
    out.append(_cards([("devices", len(devices), ""),
                       ("unreachable", counts.get("unreachable", 0), "warn" if counts.get("unreachable") else "ok"),
                       ("unhealthy", counts.get("unhealthy", 0), "bad" if counts.get("unhealthy") else "ok"),
                       ("healthy", counts.get("healthy", 0), "ok"),
                       ("drift", counts.get("drift", 0), "warn" if counts.get("drift") else "ok"),
                       ("pending confirm", counts.get("pending", 0), "warn" if counts.get("pending") else "ok")]))
    releases = data.get("releases") or {}
    out.append("<h2>Releases running</h2>")
    if releases:
        out.append(_table(["Release", "Devices"], [[esc(r), str(releases[r])] for r in sorted(releases)], numeric=(1,)))
    else:
        out.append('<p class="sub">No device answered.</p>')
    if not devices:
        out.append('<p class="sub">No devices: the targets matched none.</p>')
        return document("Fleet status: no devices", "\n".join(out), generated or data.get("generated"))
    attention = [d for _n, d in sorted(devices.items()) if device_problems(d)]
    out.append('<h2 id="attention">Needs a look (%d)</h2>' % len(attention))
    if attention:
        out.append(_table(["Site"] + DEVICE_HEADERS, [[esc(d.get("site"))] + _device_row(d)
                                                      for d in attention[:DETAIL_LIMIT]]))
        out.append(_more(DETAIL_LIMIT, len(attention), "the JSON file"))
    else:
        out.append('<p class="sub">Nothing: every device answered, is healthy or not checked, without drift.</p>')
    out.append('<h2 id="sites">Sites (%d)</h2>' % len(data.get("sites") or {}))
    # A small fleet fits on the page open; a large one opens only the sites with something to look at.
    small = len(devices) <= OPEN_SITES_UP_TO
    for site in sorted(data.get("sites") or {}):
        names = [n for n in data["sites"][site] if n in devices]
        rows = [devices[n] for n in names]
        bad = [d for d in rows if device_problems(d)]
        running = {}
        for d in rows:
            if d.get("reachable", True):
                running[d.get("release") or "none"] = running.get(d.get("release") or "none", 0) + 1
        line = "%s: %d device(s), %s%s" % (site, len(rows), ", ".join(
            "%s on %s" % (v, k) for k, v in sorted(running.items())) or "none answered",
            (", %d need a look" % len(bad)) if bad else "")
        out.append('<details%s id="site-%s"><summary>%s</summary>%s</details>' % (
            " open" if bad or small else "", esc(re.sub(r"[^A-Za-z0-9_-]", "-", site)), esc(line),
            _table(DEVICE_HEADERS, [_device_row(d) for d in sorted(
                rows, key=lambda d: (not device_problems(d), d.get("name")))])))
    return document("Fleet status: %d device(s)" % len(devices), "\n".join(out), generated or data.get("generated"))
