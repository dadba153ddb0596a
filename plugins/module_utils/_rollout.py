# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's record of a staged rollout: approval, plan, outcomes, failure budget, report.

Pure functions over plain data (the rollout_record module does the file I/O). One record per rollout id
(default: the release id) holds the policy, every target device with its wave, the generation it ran before
(what an abort rolls back to), its outcome and reason, per-wave timings and decisions, and the incidents.

The failure budget is fleet-wide, across waves (AWS IoT Jobs' abort config, not Ansible's per-batch
max_fail_percentage): the rollout aborts when failed * 100 / executed exceeds ``failure_threshold`` once at
least ``min_executed`` devices were executed. Any failure in the canary wave aborts. Unreachable devices
count as failures (``unreachable: fail``) or pause the rollout (``unreachable: pause``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

RECORD_FORMAT = 1
# Device outcomes. "pending": not yet handled in this attempt.
OUTCOMES = ("pending", "staged", "stage-failed", "confirmed", "failed", "unreachable", "rolled-back",
            "skipped-pinned")
EXECUTED = ("stage-failed", "confirmed", "failed", "unreachable", "rolled-back")
STATUSES = ("running", "paused", "aborted", "completed", "rolled-back")
# A rollout in one of these states must be resumed or rolled back, not started again.
UNFINISHED = ("running", "paused", "aborted")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")


class RolloutError(ValueError):
    """A rollout step is refused; the message says why and what to do."""


def utc_now(now=None):
    moment = now if now is not None else datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stats_key(rollout_id):
    """A set_stats key unique per rollout, usable as an AWX workflow variable name."""
    return "edgeops_rollout_" + re.sub(r"[^A-Za-z0-9]", "_", rollout_id)


def check_id(rollout_id, what="rollout id"):
    """A rollout or release id: it names a file of the record or approvals directory."""
    if not isinstance(rollout_id, str) or not _ID_RE.match(rollout_id):
        raise RolloutError("%s must be letters, digits and . _ : + - (at most 128), got %r" % (what, rollout_id))
    return rollout_id


def check_results(record, results, key="results"):
    """Results of a step: a mapping of the rollout's devices to mappings; refused, naming the device, before the
    record is touched (an unknown device used to end the module with a KeyError)."""
    if not isinstance(results, dict):
        raise RolloutError("%s must be a mapping of device name to its result, got %r" % (key, type(results).__name__))
    unknown = sorted(str(name) for name in results if name not in record["devices"])
    if unknown:
        raise RolloutError("%s: %s %s not a target of rollout %s" % (
            key, ", ".join(unknown), "is" if len(unknown) == 1 else "are", record.get("id")))
    for name, result in sorted(results.items()):
        if not isinstance(result, dict):
            raise RolloutError("%s.%s must be a mapping, got %r" % (key, name, result))
    return results


# ---- approval ------------------------------------------------------------------------------------------

def approval_entry(release, manifest_sha256, approver, now):
    if not approver or not str(approver).strip():
        raise RolloutError("an approval needs the approver's name (rollout_approver)")
    return {"release": release, "manifest_sha256": manifest_sha256, "approver": str(approver).strip(),
            "approved_at": now}


def check_approval(approval, release, manifest_sha256, environment, waived, approvals_path):
    """The approval that lets this rollout go ahead, or RolloutError. ``approval`` is the stored entry or None."""
    if waived:
        if environment == "production":
            raise RolloutError("the approval lock cannot be waived in the production environment")
        return {"waived": True, "environment": environment}
    if approval is None:
        raise RolloutError("release %s is not approved for %s: an approver must release the lock first "
                           "(playbooks/rollout_approve.yml, writes %s)" % (release, environment, approvals_path))
    if approval.get("release") != release or approval.get("manifest_sha256") != manifest_sha256:
        raise RolloutError("the approval in %s is for another manifest of release %s (sha256 %s, now %s): "
                           "the manifest changed after approval; approve it again"
                           % (approvals_path, release, str(approval.get("manifest_sha256"))[:12], manifest_sha256[:12]))
    return {"waived": False, "approver": approval.get("approver"), "approved_at": approval.get("approved_at"),
            "environment": environment}


def awx_workflow_approval(awx, release, environment, manifest_sha256=None):
    """The approval of an AWX workflow's approval node: the rollout job runs only after a person approved it there.

    ``awx`` carries the variables AWX gives a job a workflow started (awx_workflow_job_id, awx_workflow_job_name,
    awx_user_name); AWX keeps who approved the node (its workflow approvals), jobs are not told. A job template
    that takes no extra variables on launch cannot be given these by its user, which is what makes them evidence.
    """
    job_id = str((awx or {}).get("workflow_job_id") or "").strip()
    if not re.match(r"^[1-9][0-9]{0,18}$", job_id):
        raise RolloutError("rollout_approval_from=awx_workflow: release %s may go to %s only from an AWX workflow after "
                           "its approval node, and this job was not started by one (awx_workflow_job_id is %s)"
                           % (release, environment, "not set" if not job_id else "not a job id: %r" % job_id))
    checked = str(awx.get("checked_sha256") or "")
    if manifest_sha256 is not None and checked != manifest_sha256:
        raise RolloutError("rollout_approval_from=awx_workflow: %s" % (
            "the workflow's check node handed no checked manifest (edgeops_checked_manifest): the approval is for a plan "
            "the approver read, so the workflow must run playbooks/rollout_check.yml before its approval node"
            if not checked else "the release manifest changed after the workflow's check node (sha256 %s, now %s): "
            "the approval was for the plan of the manifest the approver read; run the workflow again" % (
                checked[:12], manifest_sha256[:12])))
    return {"waived": False, "via": "awx-workflow", "workflow_job_id": int(job_id), "manifest_sha256": manifest_sha256,
            "workflow_job_name": str(awx.get("workflow_job_name") or ""),
            "approver": "approval node of AWX workflow job %s" % job_id,
            "launched_by": str(awx.get("launched_by") or ""), "environment": environment}


# ---- the lock: one controller at a time drives a device's rollout ------------------------------------------
# A rollout holds its target devices from its start: a second rollout that wants any of them - another release, an
# A/B arm on the same devices, the same rollout from a second controller - is refused. The lock carries a token the
# run keeps; each later step checks that the lock is still its own (a lock broken under a running controller stops
# that controller at its next step). Closing the record releases it, except when the rollout leaves devices on its
# release half-way (paused, or aborted without rolling them back): then it keeps them, "paused", until it is resumed
# or rolled back (the same rollout id takes a paused lock back). A lock its controller left behind (killed mid-run)
# stays until it is broken explicitly, and the break is recorded in the record of the rollout that broke it.

def lock_entry(rollout_id, release, devices, holder, token, now):
    return {"rollout": rollout_id, "release": release, "devices": sorted(devices), "since": now, "holder": holder or {},
            "token": token, "state": "running"}


def lock_conflicts(held, rollout_id, devices):
    """[(lock, devices it shares with ``devices``)] of the held locks this rollout may not run beside: any lock of
    another rollout on a shared device, and this rollout's own lock while a controller runs it."""
    wanted = set(devices)
    conflicts = []
    for entry in held:
        if entry.get("rollout") == rollout_id:
            if entry.get("state") != "paused":
                conflicts.append((entry, []))
            continue
        shared = sorted(wanted & set(entry.get("devices") or []))
        if shared:
            conflicts.append((entry, shared))
    return conflicts


def describe_holder(entry):
    holder = entry.get("holder") or {}
    parts = ["%s since %s" % (entry.get("state", "running"), entry.get("since", "?"))]
    parts += ["%s %s" % (key, holder[key]) for key in ("controller", "user", "awx_job_id") if holder.get(key)]
    return "rollout %s of %s (%s)" % (entry.get("rollout"), entry.get("release"), ", ".join(parts))


def lock_refusal(conflicts, lock_dir):
    held = "; ".join("%s holds %s" % (describe_holder(entry), ", ".join(shared[:5]) + (
        " and %d more" % (len(shared) - 5) if len(shared) > 5 else "") if shared else "this rollout's id")
        for entry, shared in conflicts)
    return RolloutError("another rollout is running on these devices: %s. Wait for it to end (a paused one: resume or "
                        "roll it back); if its controller stopped without closing it, break its lock with "
                        "rollout_break_lock=%s (recorded; lock files in %s)" % (held, conflicts[0][0].get("rollout"), lock_dir))


def check_lock_owner(entry, rollout_id, token, lock_path):
    """RolloutError unless ``entry`` (the lock file's content, or None) is this run's lock."""
    if not entry or entry.get("token") != token:
        raise RolloutError("the lock of rollout %s (%s) is no longer this run's: %s. Stopping without recording; the "
                           "record belongs to whoever holds the lock now" % (
                               rollout_id, lock_path, ("now held by " + describe_holder(entry)) if entry else "it was broken"))


def keeps_devices(record):
    """Whether a closed attempt leaves devices on its release half-way, so its lock stays (state paused)."""
    return record.get("status") == "paused" or (
        record.get("status") == "aborted" and bool(rollback_targets(record, ("confirmed",))))


def lock_break(entry, holder, now):
    return {"broken_at": now, "by": holder or {}, "lock": entry}


# ---- the record ------------------------------------------------------------------------------------------

def new_record(rollout_id, release, manifest, manifest_sha256, policy, devices, now):
    return {
        "format": RECORD_FORMAT, "id": rollout_id, "release": release, "manifest": manifest,
        "manifest_sha256": manifest_sha256, "policy": policy, "status": "running", "reason": "",
        "created": now, "attempts": [], "approval": None, "waves": [], "incidents": [],
        "devices": dict((name, {"site": d.get("site"), "wave": d.get("wave"), "outcome": "pending",
                                "previous": None, "generation": None, "reason": "", "switched": False,
                                "updated": now})
                        for name, d in devices.items()),
    }


def start(record, action, rollout_id, release, manifest, manifest_sha256, policy, devices, approval, now):
    """Begin an attempt: a new rollout, a re-run of a completed one, a resume, or a whole rollback."""
    if record is not None and record.get("release") != release:
        raise RolloutError("rollout %s is a rollout of release %s, not %s: choose another rollout id"
                           % (rollout_id, record.get("release"), release))
    if action == "start":
        if record is not None and record["status"] in UNFINISHED:
            raise RolloutError("rollout %s is %s (%s): resume it (rollout_action=resume) or roll it back "
                               "(rollout_action=rollback)" % (rollout_id, record["status"], record.get("reason") or
                                                              "it did not finish"))
        fresh = new_record(rollout_id, release, manifest, manifest_sha256, policy, devices, now)
        if record is not None:
            # A re-run keeps what earlier attempts switched: an abort still rolls those devices back.
            for name, entry in fresh["devices"].items():
                old = record["devices"].get(name)
                if old and old.get("switched"):
                    entry.update(previous=old.get("previous"), switched=True)
            fresh["created"] = record.get("created", now)
            fresh["attempts"] = record.get("attempts", [])
            fresh["waves"] = record.get("waves", [])
            fresh["incidents"] = record.get("incidents", [])
        record = fresh
    elif action in ("resume", "rollback"):
        if record is None:
            raise RolloutError("there is no rollout %s to %s" % (rollout_id, action))
        if action == "resume" and record["status"] not in UNFINISHED:
            raise RolloutError("rollout %s is %s: nothing to resume" % (rollout_id, record["status"]))
        if action == "resume" and record.get("manifest_sha256") != manifest_sha256:
            raise RolloutError("the manifest of release %s changed since rollout %s began: roll it back, "
                               "then start again" % (release, rollout_id))
        for name, d in devices.items():
            entry = record["devices"].setdefault(name, {"previous": None, "generation": None, "switched": False,
                                                        "outcome": "pending", "reason": "", "updated": now})
            entry.update(site=d.get("site"), wave=d.get("wave"))
        record["policy"] = policy
    else:
        raise RolloutError("unknown rollout action %r (start, resume, rollback)" % (action,))
    if action != "rollback":
        for entry in record["devices"].values():
            # Confirmed devices stay confirmed (a resume does not switch them again); the rest are retried.
            if entry.get("outcome") != "confirmed" or action == "start":
                entry.update(outcome="pending", reason="", updated=now)
        record["status"] = "running"
        record["reason"] = ""
    record["approval"] = approval
    waves = sorted(set(d.get("wave") for d in record["devices"].values() if d.get("wave") is not None))
    # A rollout to a tag group may not contain wave 0: its first wave is its canary.
    record["canary_wave"] = waves[0] if waves and canary_wave(policy) is not None else None
    record["attempts"].append({"action": action, "started": now, "finished": None})
    return record


def _incident(record, name, kind, reason, now):
    device = record["devices"].get(name, {})
    record["incidents"].append({"time": now, "device": name, "site": device.get("site"), "release": record["release"],
                                "kind": kind, "reason": reason, "generation": device.get("generation")})


def record_stage(record, results, now):
    """Merge stage results: {device: {outcome: staged|stage-failed|unreachable, previous, generation, reason}}."""
    for name, res in results.items():
        entry = record["devices"][name]
        outcome = res.get("outcome", "unreachable")
        if outcome == "skipped-pinned":
            entry.update(outcome=outcome, reason=res.get("reason", ""), updated=now)
            continue
        generation = res.get("generation")
        previous = res.get("previous")
        # A device this rollout already switched may report the new generation as current: keep what it ran before.
        if not entry.get("switched"):
            entry["previous"] = previous
        if outcome not in ("staged", "unreachable"):
            outcome = "stage-failed"
        if outcome == "staged" and entry.get("outcome") == "confirmed" and entry.get("generation") == generation:
            outcome = "confirmed"  # a resume re-stages what it already confirmed; an abort still rolls it back
        entry.update(outcome=outcome, generation=generation, reason=res.get("reason", ""), updated=now)
        if outcome != "staged":
            _incident(record, name, "stage-" + ("unreachable" if outcome == "unreachable" else "failed"),
                      entry["reason"] or "no answer", now)
    return record


def record_wave(record, wave, results, started, now, batch=None):
    """Merge a wave's (or one batch of it: ``batch`` like "2/5") outcomes: {device: {outcome:
    confirmed|failed|unreachable, reason, rolled_back}}. The budget decides after each."""
    names = sorted(results)
    for name in names:
        res = results[name]
        entry = record["devices"][name]
        outcome = res.get("outcome", "unreachable")
        entry.update(outcome=outcome, reason=res.get("reason", ""), updated=now)
        if res.get("switched"):
            entry["switched"] = True
        if outcome == "failed":
            _incident(record, name, "gate-failed", entry["reason"], now)
            if res.get("rolled_back"):
                _incident(record, name, "rollback", "rolled back to generation %s: %s"
                          % (entry.get("previous"), entry["reason"]), now)
        elif outcome == "unreachable":
            _incident(record, name, "unreachable", entry["reason"] or "no answer during wave %d" % wave, now)
    decision, reason = decide(record, wave, names)
    counts = dict((o, sum(1 for n in names if record["devices"][n]["outcome"] == o))
                  for o in ("confirmed", "failed", "unreachable"))
    entry = {"wave": wave, "devices": names, "started": started, "finished": now,
             "counts": counts, "decision": decision, "reason": reason}
    if batch:
        entry["batch"] = str(batch)
    record["waves"].append(entry)
    if decision != "continue":
        record["status"] = "aborted" if decision == "abort" else "paused"
        record["reason"] = reason
    return decision, reason


def away(results):
    """The devices of a batch's outcomes that failed or were lost without their switch rolling them back: each reverts
    by itself after its confirm timeout, which the rollout's settle plays wait for (on those devices only)."""
    return sorted(name for name, res in results.items()
                  if res.get("outcome", "unreachable") in ("failed", "unreachable") and not res.get("rolled_back"))


def budget(record):
    """(failed, executed) over the whole rollout, per the unreachable policy."""
    policy = record["policy"]
    outcomes = [d["outcome"] for d in record["devices"].values()]
    executed = sum(1 for o in outcomes if o in EXECUTED)
    failed = sum(1 for o in outcomes if o in ("failed", "stage-failed", "rolled-back"))
    if policy.get("unreachable", "fail") == "fail":
        failed += outcomes.count("unreachable")
    return failed, executed


def decide(record, wave, wave_devices):
    """continue | abort | pause, and a one-line reason."""
    policy = record["policy"]
    devices = record["devices"]
    failed_here = [n for n in wave_devices if devices[n]["outcome"] in ("failed", "stage-failed")]
    unreachable_here = [n for n in wave_devices if devices[n]["outcome"] == "unreachable"]
    if policy.get("unreachable", "fail") == "pause" and unreachable_here:
        return "pause", "paused: %s unreachable in wave %d (unreachable: pause)" % (", ".join(unreachable_here), wave)
    if wave == record.get("canary_wave", canary_wave(policy)) and (failed_here or unreachable_here):
        first = (failed_here or unreachable_here)[0]
        return "abort", "canary %s failed: %s" % (first, devices[first]["reason"] or devices[first]["outcome"])
    failed, executed = budget(record)
    threshold = float(policy.get("failure_threshold", 10))
    if executed and executed >= int(policy.get("min_executed", 1)) and failed * 100.0 / executed > threshold:
        return "abort", ("failure budget exceeded: %d of %d executed devices failed (%.1f%% > %s%%)"
                         % (failed, executed, failed * 100.0 / executed, _num(threshold)))
    return "continue", ""


def decide_after_stage(record):
    """After staging: abort before any switch when staging failures already exceed the budget."""
    policy = record["policy"]
    if policy.get("unreachable", "fail") == "pause":
        unreachable = sorted(n for n, d in record["devices"].items() if d["outcome"] == "unreachable")
        if unreachable:
            return "pause", "paused: %s unreachable while staging (unreachable: pause)" % ", ".join(unreachable)
    failed, executed = budget(record)
    # Staged devices were executed too (successfully, so far): 1 full disk among 1000 is 0.1 %, not 100 %.
    executed += sum(1 for d in record["devices"].values() if d["outcome"] == "staged")
    threshold = float(policy.get("failure_threshold", 10))
    if executed and executed >= int(policy.get("min_executed", 1)) and failed * 100.0 / executed > threshold:
        return "abort", ("failure budget exceeded while staging: %d of %d devices failed (%.1f%% > %s%%)"
                         % (failed, executed, failed * 100.0 / executed, _num(threshold)))
    return "continue", ""


def _num(value):
    return ("%d" % value) if float(value).is_integer() else ("%s" % value)


def canary_wave(policy):
    """Wave 0 is the canary when the plan starts with a device count (``[1, ...]``)."""
    plan = policy.get("wave_plan") or []
    return 0 if plan and isinstance(plan[0], int) and not isinstance(plan[0], bool) else None


def rollback_targets(record, outcomes_only=None):
    """Devices this rollout switched that still run the new generation: roll them back to ``previous``."""
    targets = {}
    for name, entry in sorted(record["devices"].items()):
        if not entry.get("switched") or entry.get("previous") is None:
            continue
        if outcomes_only is not None and entry.get("outcome") not in outcomes_only:
            continue
        if entry.get("previous") != entry.get("generation"):
            targets[name] = entry["previous"]
    return targets


def finish(record, final, now):
    """Close the attempt: ``final`` maps device -> {current, rolled_back, incidents (the device's own)}."""
    for name, res in final.items():
        entry = record["devices"].get(name)
        if entry is None:
            continue
        for inc in res.get("incidents") or []:
            if inc.get("what") in ("deadman-revert", "health-rollback", "activation-failed", "boot-rollback"):
                _incident(record, name, inc["what"], inc.get("reason", ""), now)
        if res.get("rollback_attempted") and not res.get("rolled_back"):
            entry["reason"] = "rollback failed: %s" % (res.get("reason") or "no answer")
            _incident(record, name, "rollback-failed", entry["reason"], now)
        if res.get("rolled_back"):
            entry.update(outcome="rolled-back" if entry["outcome"] == "confirmed" else entry["outcome"],
                         updated=now)
            _incident(record, name, "rollback", "rolled back to generation %s (rollout %s)"
                      % (entry.get("previous"), record["status"]), now)
        if "current" in res:
            entry["current"] = res["current"]
    if record["status"] == "running":
        left = [n for n, d in record["devices"].items() if d["outcome"] in ("pending", "staged")]
        if left:
            record["status"] = "paused"
            record["reason"] = "stopped before %d device(s) were switched: %s" % (len(left), ", ".join(sorted(left)[:5]))
        else:
            record["status"] = "completed"
    if record["attempts"]:
        record["attempts"][-1]["finished"] = now
    return record


def finish_rollback(record, results, now):
    """After rollout_action=rollback: results maps device -> {ok, reason}."""
    bad = sorted(n for n, r in results.items() if not r.get("ok"))
    for name, res in results.items():
        entry = record["devices"][name]
        if res.get("ok"):
            entry.update(outcome="rolled-back", switched=False, updated=now)
            _incident(record, name, "rollback", "rollout %s rolled back to generation %s" % (record["id"], entry["previous"]), now)
        else:
            entry.update(reason=res.get("reason", ""), updated=now)
    record["status"] = "rolled-back" if not bad else "aborted"
    record["reason"] = ("rolled back %d device(s)" % len(results)) if not bad else (
        "rollback failed on %s" % ", ".join(bad))
    if record["attempts"]:
        record["attempts"][-1]["finished"] = now
    return record


def counts(record):
    out = dict((o, 0) for o in OUTCOMES)
    for entry in record["devices"].values():
        out[entry["outcome"]] = out.get(entry["outcome"], 0) + 1
    return dict((k, v) for k, v in out.items() if v)


# Outcomes that need a person's look, worst first; the summary lists these devices (capped) and counts the rest.
PROBLEM_OUTCOMES = ("failed", "stage-failed", "rolled-back", "unreachable")
SUMMARY_DEVICES = 20


def summary(record, record_path=None, report_path=None, limit=SUMMARY_DEVICES):
    """A short human summary, the same length at 10 or 10,000 devices: the status line, one line per wave (its
    batches summed; a batch that stopped the rollout on a line of its own), the counts per outcome, a table of the
    failed, rolled back and unreachable devices (every device when the fleet is small; at most ``limit`` rows, then
    how many more), and where the JSON record and the HTML report are."""
    lines = ["rollout %s of release %s: %s%s" % (record["id"], record["release"], record["status"],
                                                 (" - " + record["reason"]) if record.get("reason") else "")]
    groups = []
    for wave in record["waves"]:
        # Batches of one wave in one attempt (a resume numbers them from 1 again).
        if groups and groups[-1][0]["wave"] == wave["wave"] and _batch_no(wave) > _batch_no(groups[-1][-1]) > 0:
            groups[-1].append(wave)
        else:
            groups.append([wave])
    for group in groups:
        if len(group) == 1:
            lines.append(_wave_line(group[0]))
            continue
        totals = {}
        for wave in group:
            for key, value in wave["counts"].items():
                totals[key] = totals.get(key, 0) + value
        stops = [w for w in group if w["decision"] != "continue"]
        lines.append("  wave %d: %d device(s) in %d batches %s, %s%s" % (
            group[0]["wave"], sum(len(w["devices"]) for w in group), len(group),
            _seconds(group[0]["started"], group[-1]["finished"]),
            ", ".join("%s %d" % (k, v) for k, v in sorted(totals.items()) if v) or "nothing done",
            (" -> " + stops[-1]["decision"]) if stops else ""))
        lines.extend(_wave_line(w) for w in stops)
    devices = record["devices"]
    tally = counts(record)
    lines.append("  devices: %d - %s" % (len(devices), ", ".join(
        "%s %d" % (o, tally[o]) for o in sorted(tally, key=lambda o: (o not in PROBLEM_OUTCOMES, o))) or "none"))
    rank = dict((o, i) for i, o in enumerate(PROBLEM_OUTCOMES))
    order = sorted(devices, key=lambda n: (rank.get(devices[n]["outcome"], len(rank)), devices[n].get("wave") or 0, n))
    listed = order if len(devices) <= limit else [n for n in order if devices[n]["outcome"] in PROBLEM_OUTCOMES]
    if listed:
        if len(listed) < len(devices):
            lines.append("  failed, rolled back or unreachable: %d" % len(listed))
        # Capped: the first of each outcome is shown whatever the others, then the rest in order.
        shown = set(listed[:limit])
        if len(listed) > limit:
            firsts = [[n for n in listed if devices[n]["outcome"] == o][:1] for o in PROBLEM_OUTCOMES]
            shown = set(sum(firsts, []))
            shown.update([n for n in listed if n not in shown][:limit - len(shown)])
        rows = [("DEVICE", "SITE", "WAVE", "OUTCOME", "GENERATION", "REASON")]
        for name in [n for n in listed if n in shown]:
            d = devices[name]
            gen = "%s -> %s" % (d.get("previous"), d.get("generation")) if d.get("generation") is not None else "-"
            rows.append((name, str(d.get("site") or "-"), str(d.get("wave")), d["outcome"], gen,
                         " ".join((d.get("reason") or "").split())[:120]))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for row in rows:
            lines.append(("  " + "  ".join(row[i].ljust(widths[i]) for i in range(5)) + "  " + row[5]).rstrip())
        if len(listed) > limit:
            left = {}
            for name in listed:
                if name not in shown:
                    left[devices[name]["outcome"]] = left.get(devices[name]["outcome"], 0) + 1
            lines.append("  ... and %d more (%s), see the report" % (len(listed) - len(shown), ", ".join(
                "%s %d" % (o, left[o]) for o in PROBLEM_OUTCOMES if left.get(o))))
    if record_path:
        lines.append("record (JSON report): %s" % record_path)
    if report_path:
        lines.append("report (HTML page): %s" % report_path)
    return lines


def _batch_no(wave):
    head = str(wave.get("batch") or "").split("/", 1)[0]
    return int(head) if head.isdigit() else 0


def _wave_line(wave):
    batch = wave.get("batch") or ""
    return "  wave %d%s: %d device(s) %s, %s%s" % (
        wave["wave"], (" batch " + batch) if batch and batch != "1/1" else "", len(wave["devices"]),
        _seconds(wave["started"], wave["finished"]),
        ", ".join("%s %d" % (k, v) for k, v in sorted(wave["counts"].items()) if v) or "nothing done",
        (" -> " + wave["decision"]) if wave["decision"] != "continue" else "")


def _seconds(started, finished):
    try:
        a = datetime.datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ")
        b = datetime.datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return "in ? s"
    return "in %d s" % (b - a).total_seconds()


def alerts(record, since=0, source=""):
    """Alertmanager v2 alerts for the incidents from index ``since`` on."""
    out = []
    for inc in record["incidents"][since:]:
        labels = {"alertname": "EdgeopsRolloutIncident", "severity": "critical" if inc["kind"] in (
            "gate-failed", "deadman-revert", "health-rollback", "boot-rollback", "rollback-failed") else "warning",
            "site": inc.get("site") or "unknown", "device": inc["device"], "release": inc["release"],
            "reason": inc["kind"], "rollout": record["id"]}
        out.append({"labels": labels,
                    "annotations": {"summary": "%s on %s (release %s)" % (inc["kind"], inc["device"], inc["release"]),
                                    "description": inc.get("reason", "")[:1000]},
                    "generatorURL": source or "", "startsAt": inc["time"]})
    return out


def failure_alerts(outcomes, release_file="", rollout_id="", workflow=None, now=None):
    """Alertmanager v2 alerts for a rollout workflow that failed (the AWX workflow's failure node).

    ``outcomes`` maps the ``set_stats`` keys the workflow's nodes handed on (``edgeops_rollout_<id>``) to their data:
    one alert per rollout that did not complete. When none was handed on - the check failed, or the rollout stopped
    before its record began (a held lock, a missing approval) - one alert names the workflow and the release file.
    """
    workflow = workflow or {}
    where = ("AWX workflow job %s (%s)" % (workflow["job_id"], workflow.get("name") or "?")
             if workflow.get("job_id") else "the rollout workflow")
    release = re.sub(r"\.ya?ml$", "", (release_file or "").rstrip("/").rsplit("/", 1)[-1]) or "unknown"
    now = now or utc_now()
    out = []
    for key in sorted(outcomes or {}):
        stats = outcomes[key]
        if not isinstance(stats, dict) or stats.get("status") == "completed":
            continue
        record = str(stats.get("record") or "")
        rollout = record.rstrip("/").rsplit("/", 1)[-1][:-5] if record.endswith(".json") else key[len("edgeops_rollout_"):]
        counts = ", ".join("%s %s" % (count, outcome) for outcome, count in sorted((stats.get("counts") or {}).items()))
        out.append({
            "labels": {"alertname": "EdgeopsRolloutFailed", "severity": "critical", "rollout": rollout,
                       "release": str(stats.get("release") or release), "status": str(stats.get("status") or "unknown")},
            "annotations": {"summary": "rollout %s of %s: %s" % (rollout, stats.get("release") or release,
                                                                 stats.get("status") or "unknown"),
                            "description": ("%s. Devices: %s. Record: %s. Run by %s." % (
                                stats.get("reason") or "no reason given", counts or "none", record or "none", where))[:1000]},
            "startsAt": now})
    if not out:
        out.append({
            "labels": {"alertname": "EdgeopsRolloutFailed", "severity": "critical", "rollout": rollout_id or release,
                       "release": release, "status": "not-started"},
            "annotations": {"summary": "rollout of %s failed without an outcome" % release,
                            "description": ("%s failed and no rollout outcome was handed on: the check failed, the "
                                            "approval or the devices' lock was refused, or the job stopped before its "
                                            "report; see the job's output and the rollout's record." % where)[:1000]},
            "startsAt": now})
    return out
