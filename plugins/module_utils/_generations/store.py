# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store: switch (with the dead-man), confirm, rollback, dead-man revert, boot recovery, listing and gc.

Every public method that changes something refuses what it can before it takes the state directory's lock (which
creates the directory): ``plan_*`` decide what the operation would do, reading only, and raise what the operation
would raise; the operation runs its plan again under the lock, and check mode reports the plan. Staging and
activation are in stage.py and activate.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil

from .activate import Activation
from .confirm import DEFAULT_CONFIRM_TIMEOUT, arm_timer, disarm_timer, pending_record, timeout_problem
from .errors import GenerationError
from .plans import after_boot_health, boot_plan, gc_plan, images_only_in, previous_confirmed, summarize_images
from .probes import Probe, run_health_checks
from .stage import Staging
from .sysio import fsync_dir, now_iso

DEADMAN_UNIT = "edgeops-deadman@%d"


def _then_metrics(operation):
    """Rewrite the metrics file after the operation, whatever its outcome (a failed switch is what they show)."""
    def wrapper(self, *args, **kwargs):
        try:
            return operation(self, *args, **kwargs)
        finally:
            if self._lock_fd is not None:  # it changed something (it took the lock)
                self.write_metrics()
    wrapper.__name__ = operation.__name__
    wrapper.__doc__ = operation.__doc__
    return wrapper


class Store(Staging, Activation):
    """Generations under one state directory. Every public method takes the lock."""

    stage = _then_metrics(Staging.stage)  # a staged generation is the newest: a rollout under way

    def monitor_checks(self):
        """The monitor rule: each unit of the agent's ``monitor_units`` must be active, in every health run."""
        return [{"name": "monitor %s" % unit, "type": "systemd", "unit": unit, "retries": 3, "interval": 2, "timeout": 5}
                for unit in self.config.get("monitor_units") or []]

    def check_health(self, generation):
        """(all_ok, results) of the generation's local health checks, the monitor's first; kept for the metrics."""
        checks = (self.monitor_checks() + self.health_checks(generation)) if generation is not None else []
        ok, results = run_health_checks(checks, Probe(self.run, self.project), self.sleep)
        self.record_health(generation, results)
        return ok, results

    def _deadman_arm(self, generation, timeout):
        error = arm_timer(self.run, DEADMAN_UNIT % generation, timeout,
                          "edgeops dead-man: revert generation %d unless confirmed" % generation)
        if error:
            raise GenerationError("could not arm the dead-man timer (systemd-run): %s" % error)

    def _deadman_disarm(self, generation):
        if generation is not None:
            disarm_timer(self.run, DEADMAN_UNIT % generation)

    def _commit_rollback(self, previous, target, status, reason, forget=False):
        """Point both pointers at ``target``: ``confirmed`` first, so that a power loss after the
        first rename makes boot recovery finish the rollback. ``previous`` gets ``status``; with
        ``forget`` it also leaves the confirmed history (it must not be rolled back to again)."""
        self._deadman_disarm(previous)
        self.set_pointer("confirmed", target)
        self.set_pointer("current", target)
        state = self.read_state()
        stamp = now_iso(self.clock)
        if previous is not None:
            self.mark(state, previous, status, reason=reason, **{status.replace("-", "_") + "_at": stamp})
        self.mark(state, target, "confirmed", confirmed_at=stamp, deadline=None)
        history = [g for g in state["history"] if g != target and not (forget and g == previous)]
        state["history"] = history + [target]
        self.write_state(state)

    def plan_switch(self, generation=None, confirm_timeout=DEFAULT_CONFIRM_TIMEOUT):
        """What ``switch`` would do: ``{changed, generation}`` (None: the newest), or its refusal. Reads only."""
        problem = timeout_problem(confirm_timeout)
        if problem:
            raise GenerationError(problem)
        target = self.newest() if generation is None else generation
        self.require_kept(target)
        return {"changed": self.pointer("current") != target, "generation": target}

    @_then_metrics
    def switch(self, generation=None, confirm_timeout=DEFAULT_CONFIRM_TIMEOUT, health=True):
        """Arm the dead-man timer, swap ``current``, activate, run the local health checks."""
        self.plan_switch(generation, confirm_timeout)
        self.lock()
        generation = self.plan_switch(generation, confirm_timeout)["generation"]
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        if current == generation:
            return {"changed": False, "generation": generation, "rolled_back": False,
                    "deadline": self.read_state()["generations"].get(str(generation), {}).get("deadline")}
        state = self.read_state()
        pending = pending_record(generation, DEADMAN_UNIT % generation, confirm_timeout, self.clock())
        deadline = now_iso(lambda: pending["revert_at"])
        self.mark(state, generation, "pending", switched_at=now_iso(self.clock), switched_from=current,
                  deadline=deadline, reason=None)
        self.write_state(state)
        if current != confirmed:
            self._deadman_disarm(current)
        self._deadman_arm(generation, confirm_timeout)
        self.set_pointer("current", generation)
        previous = state["active"]
        failure = None
        try:
            self.activate(generation, previous)
        except GenerationError as exc:
            failure = ("activation-failed", "activation of generation %d failed: %s" % (generation, exc.message), [])
        if failure is None and health:
            ok, results = self.check_health(generation)
            if not ok:
                failed = [r for r in results if not r["passed"]]
                failure = ("health-rollback", "health check %s failed after switch to generation %d: %s"
                           % (failed[0]["name"], generation, failed[0]["detail"]), results)
        self._count_switch("rolled_back" if failure else "activated")
        if failure:
            what, reason, results = failure
            self._revert(generation, confirmed, what, reason)
            return {"changed": True, "generation": generation, "rolled_back": True, "rolled_back_to": confirmed,
                    "reason": reason, "health": results}
        return {"changed": True, "generation": generation, "rolled_back": False, "deadline": deadline}

    def _count_switch(self, result):
        state = self.read_state()
        switches = state.setdefault("counters", {}).setdefault("switches", {})
        switches[result] = switches.get(result, 0) + 1
        self.write_state(state)

    def _revert(self, failed, target, what, reason):
        """Go back to ``target`` (the last confirmed generation, or nothing) and record why."""
        self._deadman_disarm(failed)
        if failed is not None:
            state = self.read_state()
            self.mark(state, failed, "failed", failed_at=now_iso(self.clock), reason=reason)
            self.write_state(state)
        self.set_pointer("current", target)
        self.incident(what, reason, gen_from=failed, gen_to=target)
        try:
            self.activate(target, failed)
        except GenerationError as exc:
            self.incident("revert-activation-failed", "activating generation %s after %s failed: %s"
                          % (target, what, exc.message), gen_from=failed, gen_to=target)
            raise

    def plan_confirm(self, generation=None):
        """What ``confirm`` would do: ``{changed, generation}`` (None: the current one), or its refusal. Reads only."""
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        generation = current if generation is None else generation
        if current != generation:
            entry = self.read_state()["generations"].get(str(generation), {})
            if entry.get("state") == "failed":
                raise GenerationError("generation %d was rolled back at %s: %s"
                                      % (generation, entry.get("failed_at"), entry.get("reason")),
                                      reverted=True, current=current)
            raise GenerationError("generation %s is not the current generation (current: %s)" % (generation, current),
                                  current=current)
        return {"changed": confirmed != generation, "generation": generation}

    @_then_metrics
    def confirm(self, generation=None):
        """Make a pending generation the confirmed one; fails, with the reason, if it was reverted."""
        if self.plan_confirm(generation)["generation"] is None:
            return {"changed": False, "generation": None}  # nothing was ever switched to: nothing to confirm
        self.lock()
        generation = self.plan_confirm(generation)["generation"]
        confirmed = self.pointer("confirmed")
        if confirmed == generation:
            self._deadman_disarm(generation)
            return {"changed": False, "generation": generation}
        self.set_pointer("confirmed", generation)
        self._deadman_disarm(generation)
        state = self.read_state()
        self.mark(state, generation, "confirmed", confirmed_at=now_iso(self.clock), deadline=None)
        state["history"] = [g for g in state["history"] if g != generation] + [generation]
        state["boot_failures"].pop(str(generation), None)
        self.write_state(state)
        return {"changed": True, "generation": generation}

    def plan_rollback(self, target=None):
        """What ``rollback`` would do: ``{changed, generation}``, or its refusal. Reads only."""
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        if target is None:
            target = confirmed if current != confirmed else previous_confirmed(self.read_state()["history"], current)
            if target is None:
                raise GenerationError("there is no earlier confirmed generation to roll back to")
        self.require_kept(target)
        return {"changed": not (current == target == confirmed), "generation": target}

    @_then_metrics
    def rollback(self, target=None, health=True):
        """Operator rollback to any kept generation (default: the previous confirmed one)."""
        self.plan_rollback(target)
        self.lock()
        target = self.plan_rollback(target)["generation"]
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        if current == target and confirmed == target:
            return {"changed": False, "generation": target}
        if current is not None and current != target:
            self._commit_rollback(current, target, "rolled-back", "operator rollback to generation %d" % target)
        else:
            self._commit_rollback(None, target, None, None)
        state = self.read_state()
        self.incident("rollback", "operator rollback from generation %s to %d" % (current, target),
                      gen_from=current, gen_to=target)
        self.activate(target, state["active"])
        result = {"changed": True, "generation": target, "rolled_back_from": current}
        if health:
            ok, results = self.check_health(target)
            result["health"] = results
            if not ok:
                reason = "generation %d is unhealthy after rollback: %s" % (
                    target, [r["detail"] for r in results if not r["passed"]][0])
                self.incident("rollback-unhealthy", reason, gen_from=current, gen_to=target)
                raise GenerationError(reason, **result)
        return result

    @_then_metrics
    def deadman(self, generation):
        """Run by the dead-man timer: revert if ``generation`` is still current and unconfirmed."""
        self.lock()
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        if current != generation or confirmed == generation:
            self.log("dead-man for generation %d: nothing to do (current %s, confirmed %s)"
                     % (generation, current, confirmed))
            return {"changed": False}
        state = self.read_state()
        deadline = state["generations"].get(str(generation), {}).get("deadline")
        self._revert(generation, confirmed, "deadman-revert",
                     "switch to generation %d was not confirmed by the controller before %s; reverted to %s"
                     % (generation, deadline, confirmed if confirmed is not None else "no generation"))
        return {"changed": True, "reverted_to": confirmed}

    @_then_metrics
    def boot(self):
        """Run early at boot: finish or undo whatever a power loss interrupted."""
        self.lock()
        self.clean_partial()
        for name in (".current.new", ".confirmed.new"):
            if os.path.lexists(os.path.join(self.dir, name)):
                os.unlink(os.path.join(self.dir, name))
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        state = self.read_state()
        plan = boot_plan(current, confirmed)
        if plan["action"] == "revert":
            self._revert(current, confirmed, "boot-revert", plan["reason"])
            return {"action": "revert", "generation": confirmed}
        if current is None:
            return {"action": "none", "generation": None}
        try:
            self.activate(current, state["active"])
            ok, results = self.check_health(current)
        except GenerationError as exc:
            # Counts as a failed boot of this generation, like a failing health check.
            ok, results = False, [{"name": "activation", "type": "activation", "passed": False, "attempts": 1,
                                   "detail": exc.message}]
        state = self.read_state()
        limit = int(self.config["boot_failure_limit"])
        verdict = after_boot_health(ok, int(state["boot_failures"].get(str(current), 0)), limit,
                                    state["history"], current)
        state["boot_failures"][str(current)] = verdict["failures"]
        self.write_state(state)
        if verdict["action"] == "healthy":
            return {"action": "reassert", "generation": current, "health": results}
        detail = [r["detail"] for r in results if not r["passed"]][0]
        if verdict["action"] == "record" or verdict["target"] is None:
            self.incident("boot-health-failed", "generation %d failed its health checks at boot (%d/%d): %s"
                          % (current, verdict["failures"], limit, detail), gen_from=current, gen_to=current)
            return {"action": "unhealthy", "generation": current, "failures": verdict["failures"], "health": results}
        target = verdict["target"]
        reason = ("generation %d failed its health checks at %d boots in a row (last: %s); rolled back to %d"
                  % (current, verdict["failures"], detail, target))
        self._commit_rollback(current, target, "failed", reason, forget=True)
        self.incident("boot-rollback", reason, gen_from=current, gen_to=target)
        self.activate(target, current)
        return {"action": "rollback", "generation": target}

    # ---- listing and garbage collection ----

    def listing(self, incidents_after=0, live=False):
        if os.path.isdir(self.dir):
            self.lock(shared=True)
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        state = self.read_state()
        gens = []
        for gen in self.generation_ids():
            man = self.manifest(gen) or {}
            entry = state["generations"].get(str(gen), {})
            gens.append({
                "id": gen, "release": man.get("release"), "created": man.get("created"),
                "state": entry.get("state", "staged"), "current": gen == current, "confirmed": gen == confirmed,
                "reason": entry.get("reason"), "deadline": entry.get("deadline") if gen == current != confirmed else None,
                "intact": not self.integrity_problems(gen), "images": man.get("images", []),
                "switched_at": entry.get("switched_at"), "confirmed_at": entry.get("confirmed_at"),
            })
        result = {"current": current, "confirmed": confirmed, "pending": current if current != confirmed else None,
                  "generations": gens, "history": state["history"], "boot_failures": state["boot_failures"],
                  "incidents": self.incidents(incidents_after)}
        if live:
            result["drift"] = self.live_problems(current)
        return result

    def image_report(self):
        """Disk used by images on the device, and which kept generations use each (the rest can be pruned)."""
        # Not --all: intermediate build layers are part of their image's size already.
        rc, out, err = self.run(["docker", "image", "ls", "--digests", "--no-trunc", "--format", "{{json .}}"],
                                timeout=120)
        if rc != 0:
            raise GenerationError("docker image ls failed: %s" % (err.strip() or out.strip()))
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        used_by = {}
        for gen in self.generation_ids():
            for ref in (self.manifest(gen) or {}).get("images", []):
                used_by.setdefault(ref, []).append(gen)
        ids = sorted(set(row["ID"] for row in rows))
        sizes = {}
        if ids:
            rc, out, err = self.run(["docker", "image", "inspect", "--format", "{{.Id}} {{.Size}}"] + ids, timeout=120)
            if rc != 0:
                raise GenerationError("docker image inspect failed: %s" % (err.strip() or out.strip()))
            for line in out.splitlines():
                image_id, _sep, size = line.partition(" ")
                if size.strip().isdigit():
                    sizes[image_id] = int(size)
        return summarize_images(rows, sizes, used_by)

    def plan_gc(self, keep):
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        kept, removed = gc_plan(self.generation_ids(), keep, [current, confirmed])
        images = images_only_in([self.manifest(g) or {} for g in removed], [self.manifest(g) or {} for g in kept])
        return kept, removed, images

    @_then_metrics
    def gc(self, keep):
        _kept, removed, _images = self.plan_gc(keep)
        if not removed and not os.path.isdir(self.gen_root):
            return {"changed": False, "kept": [], "removed": [], "images_removed": [], "images_not_removed": []}
        self.lock()
        kept, removed, images = self.plan_gc(keep)
        state = self.read_state()
        for gen in removed:
            trash = os.path.join(self.gen_root, ".trash-%d" % gen)
            os.rename(self.gen_dir(gen), trash)
            shutil.rmtree(trash, ignore_errors=True)
            state["generations"].pop(str(gen), None)
            state["boot_failures"].pop(str(gen), None)
        state["history"] = [g for g in state["history"] if g not in removed]
        if removed:
            fsync_dir(self.gen_root)
            self.write_state(state)
        removed_images, kept_images = [], []
        for image in images:
            rc, _out, err = self.run(["docker", "image", "rm", image], timeout=300)
            (removed_images if rc == 0 else kept_images).append(image if rc == 0 else "%s (%s)" % (image, err.strip()))
        # VM root overlays and seeds no kept generation boots from (data disks are the VM's, never removed here).
        vm_disks = self.vm_disks_unused(kept)
        for path in vm_disks:
            os.unlink(path)
        return {"changed": bool(removed or removed_images or vm_disks), "kept": kept, "removed": removed,
                "images_removed": removed_images, "images_not_removed": kept_images, "vm_disks_removed": vm_disks}
