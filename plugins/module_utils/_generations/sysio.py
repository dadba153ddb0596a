# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""I/O primitives shared by generations, the nftables module, the registry's htpasswd and secrets delivery.

Everything that runs a process, writes a file that must survive a power loss, or takes a lock goes through
here, so there is one way of doing each (and one place a test replaces).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import fcntl
import hashlib
import os
import subprocess
import tempfile
import time


def now_iso(clock=time.time):
    return datetime.datetime.fromtimestamp(clock(), tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    """The sha256 of a file, read in pieces (VM images are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data, mode=0o644, owner=None):
    """Write ``data`` (bytes or text) so that ``path`` is either the old or the new content after a power loss.

    Mode and owner (``(uid, gid)``, None: the writer's) are set on the temp file before rename(2), so no reader
    ever sees the new content with the wrong ones.
    """
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
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


def read_text(path):
    """The file's text, or None when it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def lock_file(path, shared=False, timeout=None):
    """flock ``path`` (created 0600) and return its descriptor; close it to unlock.

    ``timeout`` None waits as long as it takes; otherwise OSError(EAGAIN) after that many seconds.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    kind = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, kind if deadline is None else kind | fcntl.LOCK_NB)
            return fd
        except (IOError, OSError) as exc:
            if deadline is None or exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                os.close(fd)
                raise
            time.sleep(0.2)


def run(argv, input_data=None, timeout=None, env=None):
    """Run a command without a shell; return (rc, stdout, stderr) as text (rc 127: not found, 124: timed out)."""
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
        return 124, out.decode("utf-8", "replace"), "%s timed out after %ss" % (argv[0], timeout)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def which(program):
    for directory in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return None
