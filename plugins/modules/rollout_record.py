#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rollout_record
short_description: The controller's record of a staged rollout (approval lock, outcomes, failure budget, report)
version_added: 0.1.0
author:
  - edgeops.fleet developers (@edgeops)
description:
  - Keeps one JSON record per rollout in the state store (O(state_store) - O(record_dir)/<rollout_id>.json on the
    controller, or an S3 bucket) for the C(edgeops.fleet.rollout) playbook; run it on the controller
    (C(delegate_to=localhost), C(run_once)).
  - O(step=approve) releases the approval lock of a release manifest (who and when, bound to the manifest's sha256).
  - O(step=start) checks the approval (or its waiver outside production) and begins an attempt - a new rollout, a
    re-run, a resume of a paused or aborted one, or a whole rollback - and takes the lock of its devices
    (C(<record_dir>/running/<rollout id>.json), or in the bucket's C(locks.json)) - a rollout that wants a device another running rollout holds is
    refused, naming it. O(step=finish) and O(step=rolled_back) release it, unless the rollout leaves devices on its
    release half-way (paused, or aborted without rolling them back) - then it keeps them (the lock's state C(paused))
    until the same rollout resumes or rolls back.
  - O(step=stage) and O(step=wave) merge device outcomes and return the fleet-wide failure-budget decision
    (C(continue), C(abort) or C(pause)) with a one-line reason; every failure becomes an incident.
  - O(step=finish) and O(step=rolled_back) close the attempt and return the human summary, the Alertmanager
    alerts of the new incidents and the C(set_stats) data; the record itself is the machine-readable report, and
    an HTML page of it is written beside it, in the same store (RV(report)).
options:
  step:
    description: What to record.
    type: str
    required: true
    choices: [approve, start, stage, wave, finish, rolled_back]
  manifest:
    description: The release manifest (controller path); its sha256 binds approvals and resumes.
    type: path
    required: true
  release:
    description: The release id (the manifest's C(release)).
    type: str
    required: true
  rollout_id:
    description: The rollout's id (default the release id); A/B rollouts of one release to two tag groups use two ids.
    type: str
  record_dir:
    description: Controller directory of rollout records.
    type: path
    default: ~/.local/share/edgeops/rollouts
  approvals_dir:
    description: Controller directory of approvals (one C(<release>.json) each).
    type: path
    default: ~/.local/share/edgeops/approvals
  state_store:
    description:
      - Where the approvals, the records (with their incidents) and the devices' locks live - C(directory) (O(record_dir),
        O(approvals_dir), the locks in C(<record_dir>/running/)) or C(s3), an S3-compatible bucket (O(s3)) that controllers
        sharing no disk - AWX jobs, each in its own container - all reach.
      - In S3 the locks are one object, C(<prefix>locks.json), changed only by conditional writes (C(If-Match) its ETag,
        C(If-None-Match) when new), so two controllers cannot both take a device; the store must support them (AWS S3
        does since 2024).
    type: str
    choices: [directory, s3]
    default: directory
  s3:
    description:
      - The bucket of O(state_store=s3); records are C(<prefix>rollouts/<id>.json), approvals
        C(<prefix>approvals/<release>.json).
      - Credentials come from boto3's own chain - the C(AWS_ACCESS_KEY_ID) and C(AWS_SECRET_ACCESS_KEY) environment (what
        an AWX Amazon Web Services credential injects) or C(AWS_PROFILE) - never from a module argument.
    type: dict
    suboptions:
      bucket:
        description: The bucket (it must exist).
        type: str
        required: true
      prefix:
        description: Key prefix of this fleet's state (one prefix per fleet).
        type: str
        default: edgeops/
      endpoint_url:
        description: An S3-compatible endpoint (MinIO, Ceph RGW, ...); default AWS S3.
        type: str
      region:
        description: The region; default boto3's (C(AWS_DEFAULT_REGION)).
        type: str
      validate_certs:
        description: Verify the endpoint's TLS certificate.
        type: bool
        default: true
      ca_bundle:
        description: A CA bundle to verify it with; default boto3's (C(AWS_CA_BUNDLE)).
        type: path
  approver:
    description: Who approves (O(step=approve)).
    type: str
  environment:
    description: The rollout environment; the approval lock cannot be waived in C(production).
    type: str
    default: production
  approval_waived:
    description: Waive the approval lock (refused in C(production)); for lab and development fleets.
    type: bool
    default: false
  awx_workflow:
    description:
      - O(step=start) - take the approval from the approval node of the AWX workflow that started this job instead of
        the approval lock - C(workflow_job_id), C(workflow_job_name) and C(launched_by), from the variables AWX gives
        the job (C(awx_workflow_job_id), C(awx_workflow_job_name), C(awx_user_name)), and C(checked_sha256), the
        manifest's sha256 the workflow's check node handed on (C(edgeops_checked_manifest)). Refused without a workflow
        job id, or when the manifest is not the one the check node checked.
      - Evidence only where the job template takes no extra variables on launch (AWX then sets them, not the user).
    type: dict
  holder:
    description: O(step=start) - who drives this rollout, kept in its lock (C(user), C(awx_job_id)); the controller's
      host name is added.
    type: dict
  return_record:
    description:
      - Return the whole record as RV(record). A rollout's wave step does not need it - registered after every batch,
        each copy of a record of every device stayed on the batch's hosts until the run ended (1 GB at 5,000 devices).
    type: bool
    default: true
  lock_token:
    description:
      - The token O(step=start) returned (RV(lock_token)); at every later step the lock must still carry it, or the step
        is refused without recording (the lock was broken under this run). Without it the lock is not checked.
    type: str
  break_lock:
    description:
      - O(step=start) - the rollout id whose lock to break first, when its controller stopped without closing it; the
        broken lock is recorded in this rollout's record (C(lock_breaks)). A rollout that holds no lock is refused.
    type: str
  rollout_action:
    description: With O(step=start) - C(start) a rollout (or re-run a finished one), C(resume) a paused or aborted one,
      or C(rollback) every device it switched.
    type: str
    choices: [start, resume, rollback]
    default: start
  policy:
    description: The normalised rollout policy (O(step=start)), as the C(edgeops.fleet.rollout_policy) filter returns it.
    type: dict
  devices:
    description: O(step=start) - target device name to C(site) and C(wave).
    type: dict
  results:
    description:
      - O(step=stage) - device to C(outcome) (staged, stage-failed, unreachable, skipped-pinned), C(previous),
        C(generation), C(reason).
      - O(step=wave) - device to C(outcome) (confirmed, failed, unreachable), C(reason), C(switched), C(rolled_back).
      - O(step=finish) - device to C(current), C(rolled_back) and C(incidents) (the device's own).
      - O(step=rolled_back) - device to C(ok) and C(reason).
    type: dict
  wave:
    description: The wave number (O(step=wave)).
    type: int
  batch:
    description: Which batch of the wave (O(step=wave)), for example C(2/5); a wave larger than forks is recorded
      batch by batch, and the failure budget decides after each.
    type: str
  wave_started:
    description: When the wave (or its batch) began (UTC, C(YYYY-MM-DDTHH:MM:SSZ)).
    type: str
requirements:
  - boto3 (only for O(state_store=s3))
attributes:
  check_mode:
    support: full
    description: Computes and returns everything but writes no file.
  diff_mode:
    support: none
    description: The record is JSON written whole; RV(record) returns it.
  idempotent:
    support: none
    description: Each step appends to the record (an attempt, a wave, incidents); O(step=approve) is idempotent.
notes:
  - One controller drives a rollout at a time (the lock); the record is replaced atomically at every step.
  - The lock is taken under an exclusive C(flock) of C(<record_dir>/running/.lock), so two controllers starting at once
    are ordered; the record directory may be shared by jobs (AWX) but must support C(flock).
seealso:
  - module: edgeops.fleet.health_check
  - module: edgeops.fleet.generation
"""

EXAMPLES = r"""
- name: Release the approval lock of a release
  edgeops.fleet.rollout_record:
    step: approve
    manifest: releases/demo-1.1.0.yml
    release: demo-1.1.0
    approver: alice

- name: Record a wave and get the failure-budget decision
  edgeops.fleet.rollout_record:
    step: wave
    manifest: releases/demo-1.1.0.yml
    release: demo-1.1.0
    wave: 1
    wave_started: "2026-11-24T10:00:00Z"
    results:
      site01-dev02: {outcome: confirmed}
      site01-dev03: {outcome: failed, reason: "health check predictor-predict failed", rolled_back: true}
  delegate_to: localhost
  run_once: true
  register: decision
"""

RETURN = r"""
record:
  description: The whole rollout record after the step (also written to RV(path)).
  returned: always except O(step=approve)
  type: dict
path:
  description: The record's (or the approval's) file, or its C(s3://) URL.
  returned: always
  type: str
decision:
  description: C(continue), C(abort) or C(pause) after O(step=stage) or O(step=wave).
  returned: when O(step) is stage or wave
  type: str
away:
  description:
    - The devices of this wave (or batch) that failed or were lost without their switch rolling them back; each
      reverts by itself after its confirm timeout.
  returned: when O(step) is wave
  type: list
  elements: str
reason:
  description: One line saying why the rollout aborted or paused (empty to continue).
  returned: when O(step) is stage, wave, finish or rolled_back
  type: str
status:
  description: The rollout's status (running, paused, aborted, completed, rolled-back).
  returned: always except O(step=approve)
  type: str
summary:
  description:
    - The human summary, one line per item, as short at 10,000 devices as at 10 - the status, one line per wave (its
      batches summed; a batch that stopped the rollout on a line of its own), the counts per outcome, a table of the
      failed, rolled back and unreachable devices (every device when there are at most 20; else at most 20 rows, then
      how many more), and the paths of the JSON record and of the HTML report.
  returned: when O(step) is finish or rolled_back
  type: list
  elements: str
report:
  description:
    - The rollout's HTML report beside its record, C(<record_dir>/<rollout id>.html) or
      C(s3://<bucket>/<prefix>rollouts/<rollout id>.html) - a self-contained page (inline
      CSS, no script, nothing fetched) with the approval, the waves and batches on a timeline, every failed, rolled
      back or unreachable device with its failed gate and probe, per-site counts and the incidents.
    - Empty in check mode, or when it could not be written (a warning says why).
  returned: when O(step) is finish or rolled_back
  type: str
alerts:
  description: Alertmanager v2 alerts (labels alertname, site, device, release, reason, rollout) of this attempt's incidents.
  returned: when O(step) is finish or rolled_back
  type: list
  elements: dict
stats_key:
  description: A C(set_stats) key unique to this rollout (C(edgeops_rollout_<id>)).
  returned: always except O(step=approve)
  type: str
rollback_targets:
  description:
    - Device to the generation it ran before this rollout, for the devices this rollout switched that run the new
      generation - all of them after O(rollout_action=rollback), the confirmed ones otherwise (an abort rolls them back).
  returned: always except O(step=approve)
  type: dict
lock_token:
  description: The token of the lock O(step=start) took; give it to every later step as O(lock_token).
  returned: when O(step=start) took the lock (not in check mode)
  type: str
lock_broken:
  description: The lock O(break_lock) broke (who held it, since when, its devices), also appended to the record's C(lock_breaks).
  returned: when O(step=start) broke a lock
  type: dict
stats:
  description: Status, release, reason, counts per outcome and the record's path, for C(set_stats).
  returned: when O(step) is finish or rolled_back
  type: dict
"""

import hashlib
import socket
import traceback
import uuid

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.edgeops.fleet.plugins.module_utils import _pages as pages
from ansible_collections.edgeops.fleet.plugins.module_utils import _rollout as ro
from ansible_collections.edgeops.fleet.plugins.module_utils import _state_store as state

try:
    import boto3  # only the s3 store needs it
    BOTO3_ERROR = None
except ImportError:
    boto3, BOTO3_ERROR = None, traceback.format_exc()


def _store(module):
    p = module.params
    if p["state_store"] == "directory":
        return state.DirectoryStore(p["record_dir"], p["approvals_dir"])
    s3 = p["s3"] or {}
    if not s3.get("bucket"):
        module.fail_json(msg="state_store=s3 needs s3.bucket (rollout_state_s3.bucket)")
    if boto3 is None:
        module.fail_json(msg=missing_required_lib("boto3", reason="for state_store=s3"), exception=BOTO3_ERROR)
    return state.S3Store(s3["bucket"], s3.get("prefix"), endpoint_url=s3.get("endpoint_url"), region=s3.get("region"),
                         validate_certs=s3.get("validate_certs"), ca_bundle=s3.get("ca_bundle"))


def _take_lock(store, rollout_id, release, devices, holder, break_lock, now):
    """Take this rollout's lock (breaking break_lock's first): (its token, the broken lock or None)."""
    token = uuid.uuid4().hex

    def change(held):
        broken = None
        if break_lock:
            ro.check_id(break_lock, "rollout_break_lock")
            if break_lock not in held:
                raise ro.RolloutError("rollout_break_lock=%s: no rollout of that id holds a lock in %s"
                                      % (break_lock, store.where("lock")))
            broken = ro.lock_break(held.pop(break_lock), holder, now)
        conflicts = ro.lock_conflicts([held[k] for k in sorted(held)], rollout_id, devices)
        if conflicts:
            raise ro.lock_refusal(conflicts, store.where("lock"))
        # Broken only now, when this rollout takes the devices (and records the break): a refusal leaves it in place.
        updates = {rollout_id: ro.lock_entry(rollout_id, release, devices, holder, token, now)}
        if broken:
            updates[break_lock] = None
        return updates, broken

    return token, store.update_locks(change)


def _check_lock(store, rollout_id, token):
    """At a later step: the lock must still be this run's (a break under a running controller stops it here)."""
    if token:
        ro.check_lock_owner(store.read_lock(rollout_id), rollout_id, token, store.where("lock", rollout_id))


def _close_lock(store, rollout_id, token, record, now):
    """After the record is closed: release the lock, or keep it paused while devices stay on the release half-way."""
    def change(held):
        entry = held.get(rollout_id)
        if not entry or (token and entry.get("token") != token):
            return {}, None
        return {rollout_id: dict(entry, state="paused", token="", since=now) if ro.keeps_devices(record) else None}, None

    store.update_locks(change)


def _write_report(module, store, rollout_id, result, record, path, now):
    """The HTML report beside the JSON record, in the same store. A page that cannot be written warns: the record
    is the report that counts, and the rollout's outcome must not change because of its page."""
    report = result["report"]
    try:
        store.write_page(rollout_id, pages.rollout_report_html(record, path, generated=now))
    except (IOError, OSError, pages.PageError, state.StoreError) as exc:
        module.warn("the rollout's HTML report %s could not be written: %s" % (report, exc))
        result["summary"] = [line for line in result["summary"] if not line.startswith("report (HTML page): ")]
        result["report"] = ""


def main():
    module = AnsibleModule(
        argument_spec=dict(
            step=dict(type="str", required=True, choices=["approve", "start", "stage", "wave", "finish", "rolled_back"]),
            manifest=dict(type="path", required=True),
            release=dict(type="str", required=True),
            rollout_id=dict(type="str"),
            record_dir=dict(type="path", default="~/.local/share/edgeops/rollouts"),
            approvals_dir=dict(type="path", default="~/.local/share/edgeops/approvals"),
            state_store=dict(type="str", default="directory", choices=["directory", "s3"]),
            s3=dict(type="dict", options=dict(
                bucket=dict(type="str", required=True),
                prefix=dict(type="str", default="edgeops/"),
                endpoint_url=dict(type="str"),
                region=dict(type="str"),
                validate_certs=dict(type="bool", default=True),
                ca_bundle=dict(type="path"),
            )),
            approver=dict(type="str"),
            environment=dict(type="str", default="production"),
            approval_waived=dict(type="bool", default=False),
            awx_workflow=dict(type="dict"),
            holder=dict(type="dict"),
            break_lock=dict(type="str"),
            lock_token=dict(type="str", no_log=False),
            return_record=dict(type="bool", default=True),
            rollout_action=dict(type="str", default="start", choices=["start", "resume", "rollback"]),
            policy=dict(type="dict"),
            devices=dict(type="dict"),
            results=dict(type="dict"),
            wave=dict(type="int"),
            batch=dict(type="str"),
            wave_started=dict(type="str"),
        ),
        required_if=[("step", "approve", ["approver"]), ("step", "start", ["policy", "devices"]),
                     ("step", "wave", ["wave", "results"]), ("step", "stage", ["results"])],
        supports_check_mode=True,
    )
    p = module.params
    now = ro.utc_now()
    try:
        with open(p["manifest"], "rb") as handle:
            manifest_sha256 = hashlib.sha256(handle.read()).hexdigest()
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot read the release manifest %s: %s" % (p["manifest"], exc))
    result = {"changed": False}
    store = _store(module)
    try:
        if p["step"] == "approve":
            release = ro.check_id(p["release"], "release")
            path = store.where("approval", release)
            entry = ro.approval_entry(p["release"], manifest_sha256, p["approver"], now)
            old = store.read("approval", release)
            same = old is not None and all(old.get(k) == entry[k] for k in ("release", "manifest_sha256", "approver"))
            if not same and not module.check_mode:
                store.write("approval", release, entry)
            module.exit_json(changed=not same, path=path, approval=old if same else entry)

        ro.check_id(p["release"], "release")
        rollout_id = ro.check_id(p["rollout_id"] or p["release"])
        path = store.where("record", rollout_id)
        record = store.read("record", rollout_id)
        result.update(path=path, stats_key=ro.stats_key(rollout_id))
        if p["step"] != "start" and record is not None:
            _check_lock(store, rollout_id, p["lock_token"])
        if p["step"] == "start":
            approval = None
            if p["rollout_action"] != "rollback" and p["awx_workflow"] is not None:
                approval = ro.awx_workflow_approval(p["awx_workflow"], p["release"], p["environment"], manifest_sha256)
            elif p["rollout_action"] != "rollback":
                approval = ro.check_approval(store.read("approval", p["release"]), p["release"], manifest_sha256,
                                             p["environment"], p["approval_waived"], store.where("approval", p["release"]))
            record = ro.start(record, p["rollout_action"], rollout_id, p["release"], p["manifest"], manifest_sha256,
                              p["policy"], p["devices"], approval, now)
            if not module.check_mode:
                holder = dict(p["holder"] or {}, controller=socket.gethostname())
                # A rollback acts on every device the rollout switched, in the plan now or not.
                devices = set(p["devices"]) | (set(ro.rollback_targets(record)) if p["rollout_action"] == "rollback" else set())
                token, broken = _take_lock(store, rollout_id, p["release"], devices, holder, p["break_lock"], now)
                result["lock_token"] = token
                if broken:
                    record.setdefault("lock_breaks", []).append(broken)
                    result["lock_broken"] = broken
        elif record is None:
            raise ro.RolloutError("there is no rollout record %s: step=start comes first" % path)
        elif p["step"] == "stage":
            ro.record_stage(record, ro.check_results(record, p["results"]), now)
            result["decision"], result["reason"] = ro.decide_after_stage(record)
            if result["decision"] != "continue":
                record["status"] = "aborted" if result["decision"] == "abort" else "paused"
                record["reason"] = result["reason"]
        elif p["step"] == "wave":
            results = ro.check_results(record, p["results"])
            result["decision"], result["reason"] = ro.record_wave(record, p["wave"], results, p["wave_started"] or now,
                                                                  now, batch=p["batch"])
            result["away"] = ro.away(results)
            result["counts"] = record["waves"][-1].get("counts", {}) if record["waves"] else {}
        else:
            since = len(record["incidents"])
            if p["step"] == "finish":
                ro.finish(record, p["results"] or {}, now)
            else:
                ro.finish_rollback(record, ro.check_results(record, p["results"] or {}), now)
            started = record["attempts"][-1]["started"] if record["attempts"] else ""
            new = [i for i in record["incidents"] if i["time"] >= started] if started else record["incidents"][since:]
            report = store.where("page", rollout_id) if not module.check_mode else ""
            result.update(
                reason=record["reason"], summary=ro.summary(record, path, report), report=report,
                alerts=ro.alerts({"incidents": new, "id": rollout_id}),
                stats={"status": record["status"], "release": record["release"], "reason": record["reason"],
                       "counts": ro.counts(record), "record": path})
        if not module.check_mode:
            try:
                store.write("record", rollout_id, record)
            except (IOError, OSError, state.StoreError):
                if result.get("lock_token"):  # taken by this start: not left behind (if the store lets it go)
                    try:
                        _close_lock(store, rollout_id, result["lock_token"], {"status": "not started"}, now)
                    except (IOError, OSError, state.StoreError):
                        pass
                raise
            if p["step"] in ("finish", "rolled_back"):
                _close_lock(store, rollout_id, p["lock_token"], record, now)
                if result.get("report"):
                    _write_report(module, store, rollout_id, result, record, path, now)
        whole = p["step"] == "start" and p["rollout_action"] == "rollback"
        result.update(changed=True, status=record["status"],
                      rollback_targets=ro.rollback_targets(record, None if whole else ("confirmed",)))
        if p["return_record"]:
            result["record"] = record
    except (ro.RolloutError, state.StoreError) as exc:
        module.fail_json(msg=str(exc), **result)
    except (IOError, OSError) as exc:
        # The state store (record_dir, approvals_dir) missing, read-only or not shared with this job: said plainly,
        # and at step=start before any device is touched.
        module.fail_json(msg="the rollout's state store cannot be used: %s: %s (%s)"
                         % (getattr(exc, "filename", None) or "", exc.strerror or exc, store.describe()), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
