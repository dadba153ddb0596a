# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state directory of generations: its lock, state.json, the two pointers, manifests and incidents."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import socket
import time

from .config import AGENT_VERSION, DEFAULT_CONFIG
from .errors import GenerationError
from .release import STATE_FORMAT
from .sysio import atomic_write, fsync_dir, lock_file, now_iso, run, sha256_bytes, which
from .textfile import render as render_metrics, snapshot as metrics_snapshot, write as write_metrics_file


class StateDir:
    """Generations under one state directory. ``runner``, ``which``, ``clock`` and ``sleep`` are injected so
    that tests run the real code on a temporary directory without systemd, docker or nft."""

    def __init__(self, config=None, runner=run, clock=time.time, sleep=time.sleep, log=None, which=which):
        self.config = dict(DEFAULT_CONFIG, **(config or {}))
        self.dir = self.config["state_dir"]
        self.gen_root = os.path.join(self.dir, "generations")
        self.run = runner
        self.which = which
        self.clock = clock
        self.sleep = sleep
        self.log = log or (lambda msg: None)
        self.project = self.config["compose_project"]
        self._lock_fd = None

    # ---- locking and persistent state ----

    def lock(self, timeout=900, shared=False):
        """Writers hold the lock exclusively; readers share it, so they never see half an operation.

        Only a writer creates the state directory and the lock: a reader of a device where no writer ever ran
        has nothing to wait for, and must leave no trace."""
        if self._lock_fd is not None:
            return
        path = os.path.join(self.dir, "lock")
        if shared and not os.path.exists(path):
            return
        for directory in (self.dir, self.gen_root):
            if not shared and not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
        try:
            self._lock_fd = lock_file(path, shared, timeout)
        except (IOError, OSError):
            raise GenerationError("another generation operation holds %s/lock" % self.dir)

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def read_state(self):
        try:
            with open(os.path.join(self.dir, "state.json")) as handle:
                state = json.load(handle)
        except (IOError, OSError, ValueError):
            state = {}
        state.setdefault("format", STATE_FORMAT)
        state.setdefault("generations", {})
        state.setdefault("history", [])
        state.setdefault("boot_failures", {})
        state.setdefault("active", None)
        return state

    def write_state(self, state):
        atomic_write(os.path.join(self.dir, "state.json"), json.dumps(state, indent=2, sort_keys=True), 0o600)

    def mark(self, state, generation, status, **extra):
        entry = state["generations"].setdefault(str(generation), {})
        entry["state"] = status
        entry.update(extra)

    def pointer(self, name):
        """Generation id a pointer (``current``/``confirmed``) names, or None."""
        try:
            target = os.readlink(os.path.join(self.dir, name))
        except OSError:
            return None
        match = re.match(r"^generations/(\d+)$", target)
        return int(match.group(1)) if match else None

    def set_pointer(self, name, generation):
        """Swap a pointer with rename(2): after a power loss it is either the old or the new one."""
        link = os.path.join(self.dir, name)
        if generation is None:
            if os.path.lexists(link):
                os.unlink(link)
                fsync_dir(self.dir)
            return
        tmp = os.path.join(self.dir, ".%s.new" % name)
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink("generations/%d" % generation, tmp)
        os.rename(tmp, link)
        fsync_dir(self.dir)

    # ---- generations ----

    def generation_ids(self):
        if not os.path.isdir(self.gen_root):
            return []
        return sorted(int(n) for n in os.listdir(self.gen_root) if n.isdigit())

    def gen_dir(self, generation):
        return os.path.join(self.gen_root, str(generation))

    def manifest(self, generation):
        if generation is None:
            return None
        try:
            with open(os.path.join(self.gen_dir(generation), "manifest.json")) as handle:
                return json.load(handle)
        except (IOError, OSError, ValueError):
            return None

    def integrity_problems(self, generation):
        """Artifacts whose bytes no longer match the manifest (an immutable generation was altered)."""
        man = self.manifest(generation)
        if man is None:
            return ["manifest.json missing or unreadable"]
        problems = []
        for rel, meta in man["artifacts"].items():
            try:
                with open(os.path.join(self.gen_dir(generation), rel), "rb") as handle:
                    if sha256_bytes(handle.read()) != meta["sha256"]:
                        problems.append("%s: sha256 mismatch" % rel)
            except (IOError, OSError):
                problems.append("%s: missing" % rel)
        return problems

    def newest(self):
        """The newest kept generation (the default target of a switch); refused when none is staged."""
        ids = self.generation_ids()
        if not ids:
            raise GenerationError("no generation is staged on this device: stage a release first (state=staged)")
        return ids[-1]

    def require_kept(self, generation):
        if isinstance(generation, bool) or generation not in self.generation_ids():
            raise GenerationError("generation %s is not kept on this device (kept: %s)"
                                  % (generation, ", ".join(map(str, self.generation_ids())) or "none"))
        problems = self.integrity_problems(generation)
        if problems:
            raise GenerationError("generation %d is damaged: %s" % (generation, "; ".join(problems)))

    def health_checks(self, generation):
        if generation is None:
            return []
        with open(os.path.join(self.gen_dir(generation), "health.json")) as handle:
            return json.load(handle)

    # ---- the last health run and the metrics ----

    def record_health(self, generation, results):
        """Keep the last health run (its own file: a health run outside any operation takes no lock, so it must
        not rewrite state.json under a switch)."""
        if not os.path.isdir(self.dir):
            return
        record = {"generation": generation, "at": self.clock(), "results": results}
        atomic_write(os.path.join(self.dir, "health-last.json"), json.dumps(record, sort_keys=True), 0o600)

    def last_health(self):
        try:
            with open(os.path.join(self.dir, "health-last.json")) as handle:
                return json.load(handle)
        except (IOError, OSError, ValueError):
            return None

    def metrics_text(self):
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        ids = self.generation_ids()
        return render_metrics(metrics_snapshot(
            current, confirmed, ids[-1] if ids else None,
            dict((gen, self.manifest(gen)) for gen in (current, confirmed) if gen is not None),
            self.read_state(), self.incidents(), self.last_health(), AGENT_VERSION, self.clock()))

    def write_metrics(self):
        """Rewrite the metrics file; never fails the operation it follows (metrics are how people watch, not
        how the device decides). Returns whether a file was written."""
        try:
            return write_metrics_file(self.config.get("metrics_dir"), self.metrics_text())
        except Exception as exc:  # pylint: disable=broad-except
            self.log("could not write the metrics file: %s" % exc)
            return False

    # ---- incidents ----

    def incident(self, what, reason, gen_from=None, gen_to=None, **extra):
        """Append one incident (JSON line, fsynced) and send it to the journal."""
        record = {"time": now_iso(self.clock), "host": socket.gethostname(), "what": what,
                  "from": gen_from, "to": gen_to, "reason": reason}
        record.update(extra)
        line = json.dumps(record, sort_keys=True) + "\n"
        fd = os.open(os.path.join(self.dir, "incidents.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            import syslog
            syslog.openlog("edgeops-gen", 0, syslog.LOG_DAEMON)
            syslog.syslog(syslog.LOG_WARNING, "edgeops incident %s: %s" % (what, line.strip()))
        except Exception:  # the JSON line is the record; the journal is a convenience
            pass
        self.log("incident %s: %s" % (what, reason))
        return record

    def incidents(self, after=0):
        out = []
        try:
            with open(os.path.join(self.dir, "incidents.jsonl")) as handle:
                for seq, line in enumerate(handle, 1):
                    if seq <= after:
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:  # a torn last line after a power loss
                        continue
                    record["seq"] = seq
                    out.append(record)
        except (IOError, OSError):
            pass
        return out
