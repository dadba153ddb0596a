# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device generations: the one piece of code that stages, switches, confirms and rolls back.

The same file runs in two places and must therefore use the Python standard library only:

* inside the ``edgeops.fleet.generation`` module (Ansible ships it to the device with the module);
* as the device-side program ``edgeops-gen``, installed by the ``edgeops.fleet.agent`` role, which
  the dead-man timer and the boot recovery unit run when no controller is there.

Layout of the state directory (``/var/lib/edgeops`` by default)::

    generations/<N>/manifest.json     immutable once renamed into place
    generations/<N>/compose.yaml      (optional) containers
    generations/<N>/nftables.nft      (optional) our own ``inet edgeops`` table
    generations/<N>/vms/<name>.xml    (optional) libvirt domains
    generations/<N>/files/<i>         (optional) config files, destinations in the manifest
    generations/<N>/health.json       local health checks
    current   -> generations/<N>      what should run (absent: nothing)
    confirmed -> generations/<M>      last generation the controller confirmed (absent: nothing)
    state.json                        per-generation states, history, boot failure counts
    incidents.jsonl                   append-only incident log
    lock                              flock: one operation at a time

``current`` and ``confirmed`` are symlinks swapped by rename(2), so a power loss leaves each one
either old or new. ``current != confirmed`` means a switch is not confirmed yet: the dead-man
timer, or the boot unit after a power loss, brings the device back to ``confirmed``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# Bumped whenever the device-side behaviour changes; the module refuses to switch a device whose
# installed agent (the dead-man and boot units run it) is of another version.
AGENT_VERSION = "1"

AGENT_CONFIG = "/etc/edgeops/agent.json"
AGENT_PROGRAM = "/usr/local/sbin/edgeops-gen"
DEADMAN_UNIT = "edgeops-deadman@%d"
DEFAULT_CONFIG = {
    "state_dir": "/var/lib/edgeops",
    "compose_project": "edgeops",
    "boot_failure_limit": 3,
    "activation_timeout": 180,
}
CONFIG_KEYS = frozenset(DEFAULT_CONFIG)

NFT_FAMILY = "inet"
NFT_TABLE = "edgeops"
MIN_CONFIRM_TIMEOUT = 15
DEFAULT_CONFIRM_TIMEOUT = 120
STATE_FORMAT = 1

RELEASE_KEYS = ("id", "compose", "nftables", "vms", "files", "health_checks")
FILE_KEYS = ("path", "content", "mode")
HEALTH_TYPES = {
    "http": ("url",),
    "tcp": ("port",),
    "container": ("service",),
    "systemd": ("unit",),
    "command": ("argv",),
}
HEALTH_COMMON = ("name", "type", "retries", "interval", "timeout")
HEALTH_OPTIONAL = {
    "http": ("status", "body"),
    "tcp": ("host",),
    "container": (),
    "systemd": (),
    "command": ("exit_code",),
}

_VM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RELEASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")
_NFT_TABLE_RE = re.compile(r"^\s*(?:add\s+|create\s+|delete\s+|destroy\s+|flush\s+)?table\s+(\S+)\s+(\S+)", re.M)
_NFT_FORBIDDEN_RE = re.compile(r"^\s*(flush\s+ruleset|include\s)", re.M)


class GenerationError(Exception):
    """An operation was refused or failed. ``artifact`` names the artifact at fault, if any."""

    def __init__(self, message, artifact=None, **details):
        super(GenerationError, self).__init__(message)
        self.message = message
        self.artifact = artifact
        self.details = details


# --------------------------------------------------------------------------------------------
# Pure functions (unit-tested in tests/unit/plugins/module_utils/test_generations.py)
# --------------------------------------------------------------------------------------------

def now_iso(clock=time.time):
    return datetime.datetime.fromtimestamp(clock(), tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _number(where, key, value, low, high):
    if isinstance(value, str) and re.match(r"^\d+(\.\d+)?$", value.strip()):
        value = float(value) if "." in value else int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise GenerationError("%s.%s must be a number between %s and %s, got %r" % (where, key, low, high, value))
    return value


def validate_health_check(check, index):
    """Normalise one health check; errors name ``health_checks[i].key``."""
    where = "release.health_checks[%d]" % index
    if not isinstance(check, dict):
        raise GenerationError("%s must be a mapping, got %s" % (where, type(check).__name__))
    kind = check.get("type")
    if kind not in HEALTH_TYPES:
        raise GenerationError("%s.type must be one of %s, got %r" % (where, ", ".join(sorted(HEALTH_TYPES)), kind))
    allowed = set(HEALTH_COMMON) | set(HEALTH_TYPES[kind]) | set(HEALTH_OPTIONAL[kind])
    unknown = sorted(set(check) - allowed)
    if unknown:
        raise GenerationError("%s: unknown key(s) %s for type %s (allowed: %s)"
                              % (where, ", ".join(unknown), kind, ", ".join(sorted(allowed))))
    for key in HEALTH_TYPES[kind]:
        if check.get(key) in (None, "", []):
            raise GenerationError("%s.%s is required for type %s" % (where, key, kind))
    out = {
        "name": str(check.get("name") or "%s-%d" % (kind, index)),
        "type": kind,
        "retries": int(_number(where, "retries", check.get("retries", 3), 1, 100)),
        "interval": _number(where, "interval", check.get("interval", 2), 0, 600),
        "timeout": _number(where, "timeout", check.get("timeout", 5), 0.1, 600),
    }
    if kind == "http":
        url = str(check["url"])
        if not re.match(r"^https?://", url):
            raise GenerationError("%s.url must start with http:// or https://, got %r" % (where, url))
        out["url"] = url
        out["status"] = int(_number(where, "status", check.get("status", 200), 100, 599))
        if check.get("body") is not None:
            out["body"] = str(check["body"])
    elif kind == "tcp":
        out["host"] = str(check.get("host", "127.0.0.1"))
        out["port"] = int(_number(where, "port", check["port"], 1, 65535))
    elif kind == "container":
        out["service"] = str(check["service"])
    elif kind == "systemd":
        out["unit"] = str(check["unit"])
    elif kind == "command":
        argv = check["argv"]
        if not isinstance(argv, list) or not all(isinstance(a, (str, int, float)) for a in argv):
            raise GenerationError("%s.argv must be a list of strings (no shell), got %r" % (where, argv))
        out["argv"] = [str(a) for a in argv]
        out["exit_code"] = int(_number(where, "exit_code", check.get("exit_code", 0), 0, 255))
    return out


def check_nft_ruleset(text):
    """Refuse a ruleset that would touch anything but our own ``inet edgeops`` table."""
    if _NFT_FORBIDDEN_RE.search(text):
        raise GenerationError("release.nftables must not contain 'flush ruleset' or 'include': it may only "
                              "define table %s %s" % (NFT_FAMILY, NFT_TABLE), artifact="nftables.nft")
    tables = _NFT_TABLE_RE.findall(text)
    if not tables:
        raise GenerationError("release.nftables must define table %s %s" % (NFT_FAMILY, NFT_TABLE),
                              artifact="nftables.nft")
    for family, name in tables:
        if (family, name.rstrip("{").strip()) != (NFT_FAMILY, NFT_TABLE):
            raise GenerationError("release.nftables may only define table %s %s, found table %s %s"
                                  % (NFT_FAMILY, NFT_TABLE, family, name), artifact="nftables.nft")


def nft_replace_script(text):
    """An nft script that replaces our table in one transaction (create-if-absent, delete, define)."""
    return "table %s %s {}\ndelete table %s %s\n%s\n" % (NFT_FAMILY, NFT_TABLE, NFT_FAMILY, NFT_TABLE, text.rstrip())


def validate_release(release):
    """Check a release's shape before anything touches the device. Returns a normalised copy."""
    if not isinstance(release, dict):
        raise GenerationError("release must be a mapping, got %s" % type(release).__name__)
    unknown = sorted(set(release) - set(RELEASE_KEYS))
    if unknown:
        raise GenerationError("release: unknown key(s) %s (allowed: %s)" % (", ".join(unknown), ", ".join(RELEASE_KEYS)))
    rid = release.get("id")
    if not isinstance(rid, (str, int, float)) or not _RELEASE_ID_RE.match(str(rid)):
        raise GenerationError("release.id must be 1-128 letters, digits or . _ : + - (starting with a letter "
                              "or digit), got %r" % (rid,))
    out = {"id": str(rid), "compose": None, "nftables": None, "vms": {}, "files": [], "health_checks": []}
    compose = release.get("compose")
    if compose is not None:
        if isinstance(compose, dict):
            if not isinstance(compose.get("services"), dict) or not compose["services"]:
                raise GenerationError("release.compose.services must be a non-empty mapping of services")
            # JSON is YAML: written sorted so that the same release always gives the same bytes.
            compose = json.dumps(compose, indent=2, sort_keys=True)
        elif not isinstance(compose, str) or not compose.strip():
            raise GenerationError("release.compose must be a mapping (compose v2 file) or its YAML text")
        out["compose"] = compose
    nft = release.get("nftables")
    if nft is not None:
        if not isinstance(nft, str) or not nft.strip():
            raise GenerationError("release.nftables must be the text of table %s %s" % (NFT_FAMILY, NFT_TABLE))
        check_nft_ruleset(nft)
        out["nftables"] = nft
    vms = release.get("vms") or {}
    if not isinstance(vms, dict):
        raise GenerationError("release.vms must be a mapping of domain name to libvirt XML")
    for name, xml in sorted(vms.items()):
        if not _VM_NAME_RE.match(str(name)):
            raise GenerationError("release.vms: invalid domain name %r" % (name,))
        if not isinstance(xml, str) or "<domain" not in xml:
            raise GenerationError("release.vms.%s must be libvirt domain XML" % name)
        out["vms"][str(name)] = xml
    files = release.get("files") or []
    if not isinstance(files, list):
        raise GenerationError("release.files must be a list of {path, content, mode}")
    seen = set()
    for index, item in enumerate(files):
        where = "release.files[%d]" % index
        if not isinstance(item, dict):
            raise GenerationError("%s must be a mapping with path, content and mode" % where)
        bad = sorted(set(item) - set(FILE_KEYS))
        if bad:
            raise GenerationError("%s: unknown key(s) %s (allowed: %s)" % (where, ", ".join(bad), ", ".join(FILE_KEYS)))
        path = item.get("path")
        if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/") or path.endswith("/"):
            raise GenerationError("%s.path must be an absolute file path without '..', got %r" % (where, path))
        if path in seen:
            raise GenerationError("%s.path %s is listed twice" % (where, path))
        seen.add(path)
        content = item.get("content")
        if not isinstance(content, str):
            raise GenerationError("%s.content must be a string" % where)
        mode = str(item.get("mode", "0644"))
        if not re.match(r"^0?[0-7]{3}$", mode):
            raise GenerationError("%s.mode must be an octal string such as '0644', got %r" % (where, mode))
        out["files"].append({"path": path, "content": content, "mode": "0" + mode[-3:]})
    checks = release.get("health_checks") or []
    if not isinstance(checks, list):
        raise GenerationError("release.health_checks must be a list")
    names = set()
    for index, check in enumerate(checks):
        norm = validate_health_check(check, index)
        if norm["name"] in names:
            raise GenerationError("release.health_checks[%d].name %r is used twice" % (index, norm["name"]))
        names.add(norm["name"])
        out["health_checks"].append(norm)
    return out


def render_artifacts(release):
    """Map artifact path (relative to the generation directory) to its bytes."""
    arts = {}
    if release["compose"] is not None:
        arts["compose.yaml"] = release["compose"].encode("utf-8")
    if release["nftables"] is not None:
        arts["nftables.nft"] = release["nftables"].encode("utf-8")
    for name, xml in release["vms"].items():
        arts["vms/%s.xml" % name] = xml.encode("utf-8")
    for index, item in enumerate(release["files"]):
        arts["files/%d" % index] = item["content"].encode("utf-8")
    arts["health.json"] = json.dumps(release["health_checks"], indent=2, sort_keys=True).encode("utf-8")
    return arts


def content_digest(release_id, artifacts, files):
    """Identity of a release's content: the same digest means staging it again changes nothing."""
    blob = json.dumps({
        "release": release_id,
        "artifacts": dict((k, sha256_bytes(v)) for k, v in artifacts.items()),
        "files": [(f["path"], f["mode"]) for f in files],
    }, sort_keys=True).encode("utf-8")
    return sha256_bytes(blob)


def build_manifest(generation, release, artifacts, created, images=()):
    return {
        "format": STATE_FORMAT,
        "generation": generation,
        "release": release["id"],
        "created": created,
        "content_digest": content_digest(release["id"], artifacts, release["files"]),
        "artifacts": dict((k, {"sha256": sha256_bytes(v), "size": len(v)}) for k, v in sorted(artifacts.items())),
        "files": [{"path": f["path"], "mode": f["mode"], "artifact": "files/%d" % i}
                  for i, f in enumerate(release["files"])],
        "vms": sorted(release["vms"]),
        "images": sorted(set(images)),
    }


def nft_fingerprint(listing):
    """sha256 of an ``nft -s list table`` output, ignoring blank lines, comments and indentation."""
    lines = [line.strip() for line in listing.splitlines() if line.strip() and not line.strip().startswith("#")]
    return sha256_bytes("\n".join(lines).encode("utf-8"))


def summarize_images(rows, sizes, used_by):
    """Group ``docker image ls`` rows by image id, with size and the generations whose references match."""
    images = {}
    for row in rows:
        image = images.setdefault(row["ID"], {"id": row["ID"], "references": [], "size": sizes.get(row["ID"], 0),
                                              "generations": []})
        repo, tag, digest = row.get("Repository"), row.get("Tag"), row.get("Digest")
        refs = []
        if repo and repo != "<none>":
            if tag and tag != "<none>":
                refs.append("%s:%s" % (repo, tag))
            if digest and digest != "<none>":
                refs.append("%s@%s" % (repo, digest))
        for ref in refs:
            if ref not in image["references"]:
                image["references"].append(ref)
            image["generations"] = sorted(set(image["generations"]) | set(used_by.get(ref, [])))
    listed = sorted(images.values(), key=lambda i: (-i["size"], i["id"]))
    used = [i for i in listed if i["generations"]]
    return {
        "images": listed,
        "images_total_bytes": sum(i["size"] for i in listed),
        "images_used_bytes": sum(i["size"] for i in used),
        "images_unused_bytes": sum(i["size"] for i in listed if not i["generations"]),
    }


def next_generation_id(existing):
    return max([0] + [int(i) for i in existing]) + 1


def gc_plan(ids, keep, protected):
    """Split generation ids into (kept, removed): the newest ``keep`` plus every protected one."""
    if not _is_int(keep) or keep < 1:
        raise GenerationError("keep must be an integer >= 1, got %r" % (keep,))
    ordered = sorted(ids)
    kept = set(ordered[-keep:]) | set(i for i in protected if i is not None)
    return sorted(i for i in ordered if i in kept), sorted(i for i in ordered if i not in kept)


def images_only_in(removed_manifests, kept_manifests):
    """Images referenced by removed generations and by no kept one."""
    keep = set()
    for man in kept_manifests:
        keep.update(man.get("images", []))
    gone = set()
    for man in removed_manifests:
        gone.update(man.get("images", []))
    return sorted(gone - keep)


def previous_confirmed(history, current):
    """The newest generation confirmed before ``current`` (history is oldest-first), or None."""
    for gen in reversed(history):
        if gen != current:
            return gen
    return None


def boot_plan(current, confirmed):
    """What boot recovery does first, from the two pointers alone."""
    if current == confirmed or current is None:
        return {"action": "reassert" if current == confirmed else "revert", "target": confirmed,
                "reason": "the current pointer is missing"}
    return {"action": "revert", "target": confirmed,
            "reason": "device restarted while generation %s was switched but not confirmed" % current}


def after_boot_health(ok, failures, limit, history, current):
    """Greenboot's rule: a generation failing its checks at ``limit`` boots in a row is rolled back."""
    if ok:
        return {"action": "healthy", "failures": 0}
    failures += 1
    if failures >= limit:
        return {"action": "rollback", "failures": failures, "target": previous_confirmed(history, current)}
    return {"action": "record", "failures": failures}


# --------------------------------------------------------------------------------------------
# I/O helpers
# --------------------------------------------------------------------------------------------

def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data, mode=0o644, owner=None):
    """Write ``data`` so that ``path`` is either the old or the new content after a power loss.

    Mode and owner (``(uid, gid)``, None: the writer's) are set on the temp file before rename(2), so no reader
    ever sees the new content with the wrong ones. Also the registry's htpasswd writer (_htpasswd.write_atomic).
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if owner is not None and tuple(owner) != (os.geteuid(), os.getegid()):
                os.fchown(handle.fileno(), owner[0], owner[1])
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def run(argv, input_data=None, timeout=None, env=None):
    """Run a command without a shell; return (rc, stdout, stderr) as text."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input_data is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except OSError as exc:
        return 127, "", "%s: %s" % (argv[0], exc.strerror)
    try:
        out, err = proc.communicate(input=input_data.encode("utf-8") if input_data is not None else None,
                                    timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return 124, out.decode("utf-8", "replace"), "timed out after %ss" % timeout
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def which(program):
    for directory in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def load_config(path=AGENT_CONFIG):
    """The agent's settings (written by the agent role); defaults when the file is absent."""
    config = dict(DEFAULT_CONFIG)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (IOError, OSError) as exc:
        if exc.errno != errno.ENOENT:
            raise GenerationError("cannot read %s: %s" % (path, exc))
        return config
    except ValueError as exc:
        raise GenerationError("%s is not valid JSON: %s" % (path, exc))
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        raise GenerationError("%s: unknown key(s) %s" % (path, ", ".join(unknown)))
    config.update(data)
    return config


def installed_agent_version(path=AGENT_PROGRAM):
    """AGENT_VERSION of the library the installed ``edgeops-gen`` imports, or None."""
    lib = "/usr/local/lib/edgeops/edgeops_generations.py"
    if not os.path.exists(path) or not os.path.exists(lib):
        return None
    with open(lib) as handle:
        match = re.search(r'^AGENT_VERSION = "([^"]+)"', handle.read(), re.M)
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------
# Health checks
# --------------------------------------------------------------------------------------------

class Probe:
    """Runs one health check once; returns (ok, detail)."""

    def __init__(self, runner=run, compose_project="edgeops"):
        self.run = runner
        self.project = compose_project

    def __call__(self, check):
        return getattr(self, "_" + check["type"])(check)

    def _http(self, check):
        import urllib.error
        import urllib.request
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            resp = opener.open(check["url"], timeout=check["timeout"])
            status, body = resp.status, resp.read(65536)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read(65536) if exc.fp else b""
        except Exception as exc:  # any transport error is a failed attempt, with its reason
            return False, "GET %s: %s" % (check["url"], getattr(exc, "reason", exc))
        if status != check["status"]:
            return False, "GET %s returned %d, expected %d" % (check["url"], status, check["status"])
        if "body" in check and check["body"] not in body.decode("utf-8", "replace"):
            return False, "GET %s: body does not contain %r" % (check["url"], check["body"])
        return True, "GET %s returned %d" % (check["url"], status)

    def _tcp(self, check):
        try:
            sock = socket.create_connection((check["host"], check["port"]), timeout=check["timeout"])
            sock.close()
        except (OSError, socket.timeout) as exc:
            return False, "connect %s:%d: %s" % (check["host"], check["port"], exc)
        return True, "connect %s:%d ok" % (check["host"], check["port"])

    def _container(self, check):
        rc, out, err = self.run(["docker", "ps", "-a", "-q",
                                 "--filter", "label=com.docker.compose.project=%s" % self.project,
                                 "--filter", "label=com.docker.compose.service=%s" % check["service"]],
                                timeout=check["timeout"])
        ids = out.split()
        if rc != 0 or not ids:
            return False, "service %s has no container%s" % (check["service"], (": " + err.strip()) if rc else "")
        rc, out, err = self.run(["docker", "inspect"] + ids, timeout=check["timeout"])
        if rc != 0:
            return False, "docker inspect: %s" % err.strip()
        for info in json.loads(out):
            state = info.get("State", {})
            health = (state.get("Health") or {}).get("Status")
            if state.get("Status") != "running" or health not in (None, "healthy"):
                return False, "container %s is %s%s" % (info.get("Name", "?").lstrip("/"), state.get("Status"),
                                                        (" (%s)" % health) if health else "")
        return True, "service %s: %d container(s) running and healthy" % (check["service"], len(ids))

    def _systemd(self, check):
        rc, out, _err = self.run(["systemctl", "is-active", check["unit"]], timeout=check["timeout"])
        return rc == 0, "unit %s is %s" % (check["unit"], out.strip() or "unknown")

    def _command(self, check):
        rc, _out, err = self.run(check["argv"], timeout=check["timeout"])
        ok = rc == check["exit_code"]
        return ok, "%s exited %d%s" % (" ".join(check["argv"]), rc, "" if ok else (": " + err.strip()[-200:]))


def run_health_checks(checks, probe, sleep=time.sleep):
    """Run every check with its retries; return (all_ok, results)."""
    results = []
    for check in checks:
        attempts = 0
        while True:
            attempts += 1
            ok, detail = probe(check)
            if ok or attempts >= check["retries"]:
                break
            sleep(check["interval"])
        results.append({"name": check["name"], "type": check["type"], "passed": ok,
                        "attempts": attempts, "detail": detail})
    return all(r["passed"] for r in results), results


# --------------------------------------------------------------------------------------------
# The store: generations on one device
# --------------------------------------------------------------------------------------------

class Store:
    """Generations under one state directory. Every public method takes the lock."""

    def __init__(self, config=None, runner=run, clock=time.time, sleep=time.sleep, log=None):
        self.config = dict(DEFAULT_CONFIG, **(config or {}))
        self.dir = self.config["state_dir"]
        self.gen_root = os.path.join(self.dir, "generations")
        self.run = runner
        self.clock = clock
        self.sleep = sleep
        self.log = log or (lambda msg: None)
        self.project = self.config["compose_project"]
        self._lock_fd = None

    # ---- locking and persistent state ----

    def lock(self, timeout=900, shared=False):
        """Writers hold the lock exclusively; readers share it, so they never see half an operation."""
        if self._lock_fd is not None:
            return
        for path in (self.dir, self.gen_root):
            if not os.path.isdir(path):
                os.makedirs(path, 0o700)
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.time() + timeout
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.time() > deadline:
                    os.close(fd)
                    raise GenerationError("another generation operation holds %s/lock" % self.dir)
                time.sleep(0.2)
        self._lock_fd = fd

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
        atomic_write(os.path.join(self.dir, "state.json"),
                     json.dumps(state, indent=2, sort_keys=True).encode("utf-8"), 0o600)

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

    def health_checks(self, generation):
        if generation is None:
            return []
        with open(os.path.join(self.gen_dir(generation), "health.json")) as handle:
            return json.load(handle)

    def incident(self, what, reason, gen_from=None, gen_to=None, **extra):
        """Append one incident (JSON line, fsynced) and send it to the journal."""
        record = {"time": now_iso(self.clock), "host": socket.gethostname(), "what": what,
                  "from": gen_from, "to": gen_to, "reason": reason}
        record.update(extra)
        line = json.dumps(record, sort_keys=True) + "\n"
        path = os.path.join(self.dir, "incidents.jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
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
        path = os.path.join(self.dir, "incidents.jsonl")
        out = []
        try:
            with open(path) as handle:
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

    # ---- staging ----

    def find_by_digest(self, digest):
        for gen in reversed(self.generation_ids()):
            man = self.manifest(gen)
            if man and man.get("content_digest") == digest:
                return gen
        return None

    def plan_stage(self, release):
        """Validate the release's shape; return (normalised release, artifacts, existing id or None)."""
        norm = validate_release(release)
        arts = render_artifacts(norm)
        existing = self.find_by_digest(content_digest(norm["id"], arts, norm["files"]))
        return norm, arts, existing

    def stage(self, release, pull=True):
        """Write and validate a new generation; nothing that runs is touched."""
        self.lock()
        norm, arts, existing = self.plan_stage(release)
        if existing is not None and not self.integrity_problems(existing):
            return {"changed": False, "generation": existing}
        self.clean_partial()
        tmp = tempfile.mkdtemp(prefix=".stage-", dir=self.gen_root)
        try:
            for rel, data in arts.items():
                path = os.path.join(tmp, rel)
                if not os.path.isdir(os.path.dirname(path)):
                    os.makedirs(os.path.dirname(path))
                with open(path, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            images = self.validate_stage(tmp, norm, pull)
            generation = next_generation_id(self.generation_ids())
            manifest = build_manifest(generation, norm, arts, now_iso(self.clock), images)
            with open(os.path.join(tmp, "manifest.json"), "wb") as handle:
                handle.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            for root, dirs, files in os.walk(tmp):
                for name in files:
                    os.chmod(os.path.join(root, name), 0o444)
                for name in dirs:
                    fsync_dir(os.path.join(root, name))
            fsync_dir(tmp)
            os.rename(tmp, self.gen_dir(generation))
            fsync_dir(self.gen_root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        state = self.read_state()
        state["generations"][str(generation)] = {"state": "staged", "release": norm["id"],
                                                 "staged_at": manifest["created"]}
        self.write_state(state)
        return {"changed": True, "generation": generation}

    def validate_stage(self, tmp, release, pull):
        """Check each artifact with the tool that will apply it. Returns the compose images."""
        if release["nftables"] is not None:
            nft = which("nft")
            if not nft:
                raise GenerationError("nftables.nft: the nft program is not installed on the device",
                                      artifact="nftables.nft")
            script = os.path.join(tmp, ".nft-check")
            with open(script, "w") as handle:
                handle.write(nft_replace_script(release["nftables"]))
            rc, _out, err = self.run([nft, "-c", "-f", script], timeout=60)
            os.unlink(script)
            if rc != 0:
                raise GenerationError("nftables.nft does not validate (nft -c): %s" % err.strip(),
                                      artifact="nftables.nft")
        for name in release["vms"]:
            tool = which("virt-xml-validate")
            if not tool:
                raise GenerationError("vms/%s.xml: virt-xml-validate (libvirt) is not installed on the device" % name,
                                      artifact="vms/%s.xml" % name)
            rc, out, err = self.run([tool, os.path.join(tmp, "vms", name + ".xml"), "domain"], timeout=60)
            if rc != 0:
                raise GenerationError("vms/%s.xml does not validate: %s" % (name, (err or out).strip()),
                                      artifact="vms/%s.xml" % name)
        images = []
        if release["compose"] is not None:
            rc, out, err = self.run(["docker", "compose", "-p", self.project, "--project-directory", tmp,
                                     "-f", os.path.join(tmp, "compose.yaml"), "config", "--format", "json"],
                                    timeout=120)
            if rc != 0:
                raise GenerationError("compose.yaml does not validate (docker compose config): %s" % (err or out).strip(),
                                      artifact="compose.yaml")
            services = json.loads(out).get("services", {})
            for name, service in sorted(services.items()):
                image = service.get("image")
                if not image:
                    raise GenerationError("compose.yaml: service %s has no image (build is not done on devices)" % name,
                                          artifact="compose.yaml")
                if image not in images:
                    images.append(image)
            for image in images:
                if self.run(["docker", "image", "inspect", image], timeout=60)[0] == 0:
                    continue
                detail = "and pull is disabled"
                if pull:
                    rc, out, err = self.run(["docker", "pull", "-q", image], timeout=1800)
                    if rc == 0:
                        continue
                    detail = "and docker pull failed: %s" % (err or out).strip()
                raise GenerationError("compose.yaml: image %s is not present on the device %s" % (image, detail),
                                      artifact="compose.yaml")
        return images

    def clean_partial(self):
        """Remove what an interrupted stage or gc left behind (never referenced by a pointer)."""
        if not os.path.isdir(self.gen_root):
            return
        for name in os.listdir(self.gen_root):
            if name.startswith(".stage-") or name.startswith(".trash-"):
                shutil.rmtree(os.path.join(self.gen_root, name), ignore_errors=True)

    # ---- activation: the one code path for switch, rollback and boot ----

    def activate(self, generation, previous):
        """Make the device run ``generation`` (None: nothing of ours). Raises GenerationError."""
        man = self.manifest(generation) if generation is not None else None
        if generation is not None:
            problems = self.integrity_problems(generation)
            if problems:
                raise GenerationError("generation %d is damaged: %s" % (generation, "; ".join(problems)))
        prev = self.manifest(previous) if previous not in (None, generation) else None
        state = self.read_state()
        state["active"] = generation
        self.write_state(state)
        self._apply_files(generation, man, prev)
        self._apply_nft(generation, man)
        self._apply_vms(generation, man, prev)
        self._apply_compose(generation, man)
        self.log("activated generation %s" % generation)

    def _apply_files(self, generation, man, prev):
        wanted = dict((f["path"], f) for f in (man or {}).get("files", []))
        for path, item in sorted(wanted.items()):
            with open(os.path.join(self.gen_dir(generation), item["artifact"]), "rb") as handle:
                data = handle.read()
            mode = int(item["mode"], 8)
            try:
                with open(path, "rb") as handle:
                    same = handle.read() == data and (os.stat(path).st_mode & 0o7777) == mode
            except (IOError, OSError):
                same = False
            if not same:
                if not os.path.isdir(os.path.dirname(path)):
                    os.makedirs(os.path.dirname(path), 0o755)
                atomic_write(path, data, mode)
        for item in (prev or {}).get("files", []):
            if item["path"] not in wanted and os.path.lexists(item["path"]):
                os.unlink(item["path"])

    def _apply_nft(self, generation, man):
        nft = which("nft")
        if man and "nftables.nft" in man["artifacts"]:
            with open(os.path.join(self.gen_dir(generation), "nftables.nft")) as handle:
                script = nft_replace_script(handle.read())
            fd, path = tempfile.mkstemp(prefix=".nft-", dir=self.dir)
            with os.fdopen(fd, "w") as handle:
                handle.write(script)
            rc, _out, err = self.run([nft or "nft", "-f", path], timeout=60)
            os.unlink(path)
            if rc != 0:
                raise GenerationError("nft -f failed: %s" % err.strip(), artifact="nftables.nft")
            # nft normalises what it loads; remember its own listing to detect later drift.
            rc, out, _err = self.run([nft or "nft", "-s", "list", "table", NFT_FAMILY, NFT_TABLE], timeout=30)
            state = self.read_state()
            state["nft_applied"] = {"generation": generation, "sha256": nft_fingerprint(out) if rc == 0 else None}
            self.write_state(state)
        elif nft and self.run([nft, "list", "table", NFT_FAMILY, NFT_TABLE], timeout=30)[0] == 0:
            rc, _out, err = self.run([nft, "delete", "table", NFT_FAMILY, NFT_TABLE], timeout=30)
            if rc != 0:
                raise GenerationError("nft delete table failed: %s" % err.strip(), artifact="nftables.nft")

    def _apply_vms(self, generation, man, prev):
        wanted = (man or {}).get("vms", [])
        old = [v for v in (prev or {}).get("vms", []) if v not in wanted]
        if not wanted and not old:
            return
        virsh = which("virsh") or "virsh"
        for name in old:
            self.run([virsh, "destroy", name], timeout=120)
            self.run([virsh, "undefine", name], timeout=120)
        for name in wanted:
            xml = os.path.join(self.gen_dir(generation), "vms", name + ".xml")
            rc, out, err = self.run([virsh, "define", xml], timeout=120)
            if rc != 0:
                raise GenerationError("virsh define %s: %s" % (name, (err or out).strip()), artifact="vms/%s.xml" % name)
            # A running domain keeps its old definition until restarted; restart it so that
            # the device runs this generation's VM and not a mix.
            rc, out, _err = self.run([virsh, "domstate", name], timeout=60)
            if out.strip() == "running":
                self.run([virsh, "destroy", name], timeout=120)
            rc, out, err = self.run([virsh, "start", name], timeout=300)
            if rc != 0:
                raise GenerationError("virsh start %s: %s" % (name, (err or out).strip()), artifact="vms/%s.xml" % name)

    def _compose_base(self, generation):
        gdir = self.gen_dir(generation)
        return ["docker", "compose", "-p", self.project, "--project-directory", gdir,
                "-f", os.path.join(gdir, "compose.yaml")]

    def _remove_stale_containers(self):
        """Containers of the project that were created but never started, or are dead: what a power
        loss in the middle of a container replacement leaves behind. Compose would keep them."""
        rc, out, _err = self.run(["docker", "ps", "-a", "-q", "--filter", "label=com.docker.compose.project=%s" % self.project,
                                  "--filter", "status=created", "--filter", "status=dead"], timeout=60)
        stale = out.split() if rc == 0 else []
        if stale:
            self.log("removing %d stale container(s) of project %s" % (len(stale), self.project))
            self.run(["docker", "rm", "-f"] + stale, timeout=120)

    def _apply_compose(self, generation, man):
        timeout = int(self.config["activation_timeout"])
        if man and "compose.yaml" in man["artifacts"]:
            up = self._compose_base(generation) + [
                "up", "-d", "--remove-orphans", "--pull", "never", "--wait", "--wait-timeout", str(timeout)]
            self._remove_stale_containers()
            rc, out, err = self.run(up, timeout=timeout + 60)
            if rc != 0:
                # A power loss in the middle of a container replacement leaves two containers of one
                # service (the old one restarted by its restart policy, the new one only created),
                # which then fight over published ports. Start the project over once.
                self.log("docker compose up failed (%s); removing the project's containers and retrying"
                         % (err or out).strip()[-300:])
                self.run(["docker", "compose", "-p", self.project, "down", "--remove-orphans"], timeout=timeout)
                rc, out, err = self.run(up, timeout=timeout + 60)
            if rc != 0 and "port is already allocated" in (err + out):
                # Seen after dockerd was killed (Engine 26): a docker-proxy of a container that no
                # longer exists keeps the host port. Restarting the engine drops it.
                self.log("a stale docker-proxy holds a published port; restarting docker")
                self.run(["systemctl", "restart", "docker.service"], timeout=300)
                self._remove_stale_containers()
                rc, out, err = self.run(up, timeout=timeout + 60)
            if rc != 0:
                raise GenerationError("docker compose up failed: %s" % ((err or out).strip()[-800:]),
                                      artifact="compose.yaml")
        elif which("docker"):
            rc, out, _err = self.run(["docker", "ps", "-a", "-q", "--filter",
                                      "label=com.docker.compose.project=%s" % self.project], timeout=60)
            if rc == 0 and out.strip():
                rc, out, err = self.run(["docker", "compose", "-p", self.project, "down", "--remove-orphans"],
                                        timeout=timeout)
                if rc != 0:
                    raise GenerationError("docker compose down failed: %s" % (err or out).strip(),
                                          artifact="compose.yaml")

    def live_problems(self, generation):
        """How the running device differs from ``generation`` (empty: it runs exactly that one)."""
        problems = []
        man = self.manifest(generation) if generation is not None else {"files": [], "artifacts": {}}
        for item in man.get("files", []):
            with open(os.path.join(self.gen_dir(generation), item["artifact"]), "rb") as handle:
                want = handle.read()
            try:
                with open(item["path"], "rb") as handle:
                    if handle.read() != want:
                        problems.append("file %s differs" % item["path"])
            except (IOError, OSError):
                problems.append("file %s missing" % item["path"])
        nft = which("nft")
        if nft:
            rc, out, _err = self.run([nft, "-s", "list", "table", NFT_FAMILY, NFT_TABLE], timeout=30)
            if "nftables.nft" in man["artifacts"]:
                applied = self.read_state().get("nft_applied") or {}
                if rc != 0:
                    problems.append("nft table %s %s missing" % (NFT_FAMILY, NFT_TABLE))
                elif applied.get("generation") != generation:
                    problems.append("nft table %s %s was last applied from generation %s"
                                    % (NFT_FAMILY, NFT_TABLE, applied.get("generation")))
                elif applied.get("sha256") != nft_fingerprint(out):
                    problems.append("nft table %s %s was changed after it was applied" % (NFT_FAMILY, NFT_TABLE))
            elif rc == 0:
                problems.append("nft table %s %s present but the generation has none" % (NFT_FAMILY, NFT_TABLE))
        if which("docker"):
            rc, out, err = self.run(["docker", "ps", "-a", "--filter", "label=com.docker.compose.project=%s" % self.project,
                                     "--format", "{{json .}}"], timeout=60)
            running = {}
            for line in out.splitlines():
                row = json.loads(line)
                labels = dict(kv.split("=", 1) for kv in row.get("Labels", "").split(",") if "=" in kv)
                running.setdefault(labels.get("com.docker.compose.service"), []).append(
                    (labels.get("com.docker.compose.config-hash"), row.get("State")))
            want = {}
            if "compose.yaml" in man["artifacts"]:
                rc, out, err = self.run(self._compose_base(generation) + ["config", "--hash", "*"], timeout=60)
                for line in out.splitlines():
                    parts = line.split()
                    if len(parts) == 2:
                        want[parts[0]] = parts[1]
            for service, config_hash in sorted(want.items()):
                have = running.pop(service, [])
                if not have:
                    problems.append("service %s has no container" % service)
                for got_hash, status in have:
                    if got_hash != config_hash:
                        problems.append("service %s runs another generation's definition" % service)
                    elif status != "running":
                        problems.append("service %s is %s" % (service, status))
            for service in sorted(s for s in running if s):
                problems.append("container of service %s is not in the generation" % service)
        return problems

    # ---- switch, confirm, rollback, dead-man, boot ----

    def _deadman_arm(self, generation, timeout):
        unit = DEADMAN_UNIT % generation
        self.run(["systemctl", "stop", unit + ".timer"], timeout=30)
        self.run(["systemctl", "reset-failed", unit + ".timer", unit + ".service"], timeout=30)
        rc, out, err = self.run(["systemd-run", "--unit=%s.service" % unit, "--on-active=%ds" % timeout,
                                 "--timer-property=AccuracySec=1s",
                                 "--description=edgeops dead-man: revert generation %d unless confirmed" % generation],
                                timeout=30)
        if rc != 0:
            raise GenerationError("could not arm the dead-man timer (systemd-run): %s" % (err or out).strip())

    def _deadman_disarm(self, generation):
        if generation is not None:
            self.run(["systemctl", "stop", (DEADMAN_UNIT % generation) + ".timer"], timeout=30)

    def _mark(self, state, generation, status, **extra):
        entry = state["generations"].setdefault(str(generation), {})
        entry["state"] = status
        entry.update(extra)

    def _require_kept(self, generation):
        if generation not in self.generation_ids():
            raise GenerationError("generation %s is not kept on this device (kept: %s)"
                                  % (generation, ", ".join(map(str, self.generation_ids())) or "none"))
        problems = self.integrity_problems(generation)
        if problems:
            raise GenerationError("generation %d is damaged: %s" % (generation, "; ".join(problems)))

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
            self._mark(state, previous, status, reason=reason, **{status.replace("-", "_") + "_at": stamp})
        self._mark(state, target, "confirmed", confirmed_at=stamp, deadline=None)
        history = [g for g in state["history"] if g != target and not (forget and g == previous)]
        state["history"] = history + [target]
        self.write_state(state)

    def switch(self, generation, confirm_timeout=DEFAULT_CONFIRM_TIMEOUT, health=True):
        """Arm the dead-man timer, swap ``current``, activate, run the local health checks."""
        self.lock()
        if not _is_int(confirm_timeout) or confirm_timeout < MIN_CONFIRM_TIMEOUT:
            raise GenerationError("confirm_timeout must be an integer >= %d seconds, got %r"
                                  % (MIN_CONFIRM_TIMEOUT, confirm_timeout))
        self._require_kept(generation)
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        if current == generation:
            return {"changed": False, "generation": generation, "rolled_back": False,
                    "deadline": self.read_state()["generations"].get(str(generation), {}).get("deadline")}
        state = self.read_state()
        deadline = self.clock() + confirm_timeout
        self._mark(state, generation, "pending", switched_at=now_iso(self.clock), switched_from=current,
                   deadline=now_iso(lambda: deadline), reason=None)
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
            ok, results = run_health_checks(self.health_checks(generation), Probe(self.run, self.project), self.sleep)
            if not ok:
                failed = [r for r in results if not r["passed"]]
                failure = ("health-rollback", "health check %s failed after switch to generation %d: %s"
                           % (failed[0]["name"], generation, failed[0]["detail"]), results)
        if failure:
            what, reason, results = failure
            self._revert(generation, confirmed, what, reason)
            return {"changed": True, "generation": generation, "rolled_back": True, "rolled_back_to": confirmed,
                    "reason": reason, "health": results}
        return {"changed": True, "generation": generation, "rolled_back": False, "deadline": now_iso(lambda: deadline)}

    def _revert(self, failed, target, what, reason):
        """Go back to ``target`` (the last confirmed generation, or nothing) and record why."""
        self._deadman_disarm(failed)
        if failed is not None:
            state = self.read_state()
            self._mark(state, failed, "failed", failed_at=now_iso(self.clock), reason=reason)
            self.write_state(state)
        self.set_pointer("current", target)
        self.incident(what, reason, gen_from=failed, gen_to=target)
        try:
            self.activate(target, failed)
        except GenerationError as exc:
            self.incident("revert-activation-failed", "activating generation %s after %s failed: %s"
                          % (target, what, exc.message), gen_from=failed, gen_to=target)
            raise

    def confirm(self, generation):
        """Make a pending generation the confirmed one; fails, with the reason, if it was reverted."""
        self.lock()
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        state = self.read_state()
        entry = state["generations"].get(str(generation), {})
        if current != generation:
            if entry.get("state") == "failed":
                raise GenerationError("generation %d was rolled back at %s: %s"
                                      % (generation, entry.get("failed_at"), entry.get("reason")),
                                      reverted=True, current=current)
            raise GenerationError("generation %s is not the current generation (current: %s)" % (generation, current),
                                  current=current)
        if confirmed == generation:
            self._deadman_disarm(generation)
            return {"changed": False, "generation": generation}
        self.set_pointer("confirmed", generation)
        self._deadman_disarm(generation)
        state = self.read_state()
        self._mark(state, generation, "confirmed", confirmed_at=now_iso(self.clock), deadline=None)
        state["history"] = [g for g in state["history"] if g != generation] + [generation]
        state["boot_failures"].pop(str(generation), None)
        self.write_state(state)
        return {"changed": True, "generation": generation}

    def rollback(self, target=None, health=True):
        """Operator rollback to any kept generation (default: the previous confirmed one)."""
        self.lock()
        current, confirmed = self.pointer("current"), self.pointer("confirmed")
        state = self.read_state()
        if target is None:
            target = confirmed if current != confirmed else previous_confirmed(state["history"], current)
            if target is None:
                raise GenerationError("there is no earlier confirmed generation to roll back to")
        self._require_kept(target)
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
            ok, results = run_health_checks(self.health_checks(target), Probe(self.run, self.project), self.sleep)
            result["health"] = results
            if not ok:
                reason = "generation %d is unhealthy after rollback: %s" % (
                    target, [r["detail"] for r in results if not r["passed"]][0])
                self.incident("rollback-unhealthy", reason, gen_from=current, gen_to=target)
                raise GenerationError(reason, **result)
        return result

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
            ok, results = run_health_checks(self.health_checks(current), Probe(self.run, self.project), self.sleep)
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

    def gc(self, keep):
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
        return {"changed": bool(removed or removed_images), "kept": kept, "removed": removed,
                "images_removed": removed_images, "images_not_removed": kept_images}


# --------------------------------------------------------------------------------------------
# The device-side program: edgeops-gen <command>
# --------------------------------------------------------------------------------------------

USAGE = """usage: edgeops-gen <command> [args]

commands:
  list                   generations, pointers and recent incidents (JSON)
  verify                 exit 0 if the device runs exactly the current generation
  incidents [AFTER]      incident records after sequence number AFTER (JSON lines)
  switch N [TIMEOUT]     switch to generation N; reverts unless confirmed within TIMEOUT s (default 120)
  health                 run the current generation's health checks (exit 1 if one fails)
  confirm N              confirm generation N locally (what the controller does remotely)
  rollback [N]           roll back to generation N (default: the previous confirmed one)
  deadman N              run by edgeops-deadman@N.service when the confirm timeout expires
  boot                   run by edgeops-boot.service early at boot
  version                print the agent version
"""


def _out(text):
    sys.stdout.write(text + "\n")


def main(argv=None, config_path=AGENT_CONFIG):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if command == "version":
        _out(AGENT_VERSION)
        return 0
    try:
        store = Store(load_config(config_path), log=lambda msg: sys.stderr.write("edgeops-gen: %s\n" % msg))
        if command == "list":
            result = store.listing(live=True)
        elif command == "verify":
            problems = store.live_problems(store.pointer("current"))
            for problem in problems:
                _out(problem)
            return 1 if problems else 0
        elif command == "incidents":
            for record in store.incidents(int(args[0]) if args else 0):
                _out(json.dumps(record, sort_keys=True))
            return 0
        elif command == "switch" and len(args) in (1, 2):
            result = store.switch(int(args[0]), int(args[1]) if len(args) == 2 else DEFAULT_CONFIRM_TIMEOUT)
        elif command == "health":
            ok, results = run_health_checks(store.health_checks(store.pointer("current")),
                                            Probe(store.run, store.project), store.sleep)
            _out(json.dumps(results, indent=2, sort_keys=True))
            return 0 if ok else 1
        elif command == "confirm" and len(args) == 1:
            result = store.confirm(int(args[0]))
        elif command == "rollback" and len(args) <= 1:
            result = store.rollback(int(args[0]) if args else None)
        elif command == "deadman" and len(args) == 1:
            result = store.deadman(int(args[0]))
        elif command == "boot":
            result = store.boot()
        else:
            sys.stderr.write(USAGE)
            return 2
    except GenerationError as exc:
        sys.stderr.write("edgeops-gen: %s\n" % exc.message)
        return 1
    _out(json.dumps(result, indent=2, sort_keys=True))
    return 0
