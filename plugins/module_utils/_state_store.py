# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the rollouts' state lives: approvals, rollout records (with their incidents) and the devices' locks.

Two stores behind one interface, so the rollout_record module does not care which:

* ``DirectoryStore``: files on the controller (the default; in AWX a path exposed to every job). The locks are
  ``<record_dir>/running/<rollout id>.json``, changed under an flock of ``running/.lock``.
* ``S3Store``: objects in an S3-compatible bucket, for controllers that share no disk (AWX jobs each run in a new
  container, on any execution node). The locks are one object, ``<prefix>locks.json``, changed by optimistic
  concurrency: read it with its ETag, decide, write it back with ``If-Match`` (``If-None-Match: *`` when it does
  not exist yet); a write that lost the race (412/409) reads again and decides again. No lease object that a dead
  controller could leave behind, and no clock to trust. amazon.aws's s3_object has no conditional writes, so this
  talks to S3 through boto3, the library amazon.aws is built on; credentials come from boto3's own chain (the
  AWS_* environment an AWX "Amazon Web Services" credential injects, or a profile), never from a variable that
  could reach a log.

A record is written only by the controller that holds its rollout's lock, so records and approvals are plain
writes (atomic per object in S3, temp file + rename on disk).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import fcntl
import glob
import json
import os
import random
import tempfile
import time


class StoreError(Exception):
    """The store cannot be used (unreachable, no such bucket, denied, not writable) or holds something unreadable."""


def _decode(where, raw):
    try:
        return json.loads(raw)
    except ValueError as exc:
        # A truncated or hand-edited file: say which, instead of ending the module with a traceback.
        raise StoreError("%s is not valid JSON (%s): repair it, or move it away to start over" % (where, exc))


def _encode(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


class DirectoryStore(object):
    kind = "directory"

    def __init__(self, record_dir, approvals_dir):
        self.record_dir = record_dir
        self.approvals_dir = approvals_dir
        self.lock_dir = os.path.join(record_dir, "running")

    def where(self, kind, name=None):
        """The path a person can look at: of a record, its page, an approval, or (name None) the locks."""
        if kind == "lock":
            return os.path.join(self.lock_dir, "%s.json" % name) if name else self.lock_dir
        if kind == "page":
            return os.path.join(self.record_dir, "%s.html" % name)
        return os.path.join(self.record_dir if kind == "record" else self.approvals_dir, "%s.json" % name)

    def describe(self):
        return "record_dir %s, approvals_dir %s" % (self.record_dir, self.approvals_dir)

    def read(self, kind, name):
        path = self.where(kind, name)
        try:
            with open(path) as handle:
                raw = handle.read()
        except (IOError, OSError):
            return None
        return _decode(path, raw)

    def write(self, kind, name, data):
        self._write(self.where(kind, name), _encode(data))

    def write_page(self, name, text):
        """A record's HTML page beside it (the same temp file + rename and mode as the record)."""
        self._write(self.where("page", name), text)

    @staticmethod
    def _write(path, text):
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".rollout-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.rename(tmp, path)
        except BaseException:
            os.remove(tmp)  # no half-written file left behind
            raise

    @contextlib.contextmanager
    def _exclusive(self):
        """An exclusive flock on running/.lock: one controller at a time reads and changes the locks."""
        os.makedirs(self.lock_dir, 0o700, exist_ok=True)
        fd = os.open(os.path.join(self.lock_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read_lock(self, rollout_id):
        return self.read("lock", rollout_id)

    def update_locks(self, change):
        """Call change(held) with {rollout id: lock entry} and apply what it returns ({rollout id: entry, or None to
        remove}), atomically with respect to every other controller; returns change's second value."""
        with self._exclusive():
            held = {}
            for path in sorted(glob.glob(os.path.join(self.lock_dir, "*.json"))):
                with open(path) as handle:
                    entry = _decode(path, handle.read())
                if entry:
                    held[entry.get("rollout") or os.path.basename(path)[:-5]] = entry
            updates, value = change(held)
            for rollout_id, entry in sorted(updates.items()):
                if entry is None:
                    os.remove(self.where("lock", rollout_id))
                else:
                    self._write(self.where("lock", rollout_id), _encode(entry))
        return value


class S3Store(object):
    kind = "s3"
    # Attempts at the locks object when other controllers keep winning the race: each loss means another
    # controller changed the locks in between, so this bound is only reached under heavy contention.
    LOCK_ATTEMPTS = 20

    def __init__(self, bucket, prefix="edgeops/", client=None, endpoint_url=None, region=None, validate_certs=True,
                 ca_bundle=None):
        self.bucket = bucket
        self.prefix = prefix or ""
        if client is None:
            client = self._client(endpoint_url, region, validate_certs, ca_bundle)
        self.client = client
        self.endpoint = endpoint_url or "AWS S3"

    @staticmethod
    def _client(endpoint_url, region, validate_certs, ca_bundle):
        import boto3
        from botocore.config import Config

        # Short timeouts and few retries: an unreachable store must fail the rollout's first step in seconds, not
        # minutes, and before any device is touched.
        config = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"})
        verify = (ca_bundle or True) if validate_certs else False
        return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, region_name=region or None,
                                              verify=verify, config=config)

    def _key(self, kind, name=None):
        if kind == "lock":
            return self.prefix + "locks.json"
        if kind == "page":
            return self.prefix + "rollouts/%s.html" % name
        return self.prefix + ("rollouts/" if kind == "record" else "approvals/") + "%s.json" % name

    def where(self, kind, name=None):
        return "s3://%s/%s" % (self.bucket, self._key(kind, name))

    def describe(self):
        return "S3 bucket %s, prefix %s, endpoint %s" % (self.bucket, self.prefix or "(none)", self.endpoint)

    def _fail(self, what, key, exc):
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            reason = "%s %s" % (error.get("Code", "?"), error.get("Message", ""))
        else:
            reason = str(exc)
        return StoreError("the rollout's state store cannot be used: cannot %s s3://%s/%s: %s (endpoint %s)"
                          % (what, self.bucket, key, reason.strip(), self.endpoint))

    def _get(self, key):
        """(data or None, etag or None)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            raw = answer["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise self._fail("read", key, exc)
        except BotoCoreError as exc:
            raise self._fail("read", key, exc)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise StoreError("s3://%s/%s is not UTF-8 JSON: repair it, or remove it to start over" % (self.bucket, key))
        return _decode("s3://%s/%s" % (self.bucket, key), text), answer.get("ETag")

    def _put(self, key, data, content_type="application/json", **condition):
        from botocore.exceptions import BotoCoreError, ClientError

        body = _encode(data) if content_type == "application/json" else data
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body.encode("utf-8"),
                                   ContentType=content_type, **condition)
        except ClientError as exc:
            if condition and exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            if condition and exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return False
            raise self._fail("write", key, exc)
        except BotoCoreError as exc:
            raise self._fail("write", key, exc)
        return True

    def read(self, kind, name):
        return self._get(self._key(kind, name))[0]

    def write(self, kind, name, data):
        self._put(self._key(kind, name), data)

    def write_page(self, name, text):
        """A record's HTML page beside it (``<prefix>rollouts/<name>.html``)."""
        self._put(self._key("page", name), text, content_type="text/html; charset=utf-8")

    def read_lock(self, rollout_id):
        held = self._get(self._key("lock"))[0] or {}
        return held.get("locks", {}).get(rollout_id)

    def update_locks(self, change, sleep=time.sleep):
        key = self._key("lock")
        for attempt in range(self.LOCK_ATTEMPTS):
            current, etag = self._get(key)
            held = dict((current or {}).get("locks") or {})
            updates, value = change(dict(held))
            if not updates:
                return value
            for rollout_id, entry in updates.items():
                if entry is None:
                    held.pop(rollout_id, None)
                else:
                    held[rollout_id] = entry
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            if self._put(key, {"format": 1, "locks": held}, **condition):
                return value
            sleep(random.uniform(0.05, 0.2) * (attempt + 1))  # another controller changed the locks: decide again
        raise StoreError("s3://%s/%s: the locks kept changing under %d attempts; try again" % (
            self.bucket, key, self.LOCK_ATTEMPTS))
