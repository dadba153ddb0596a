# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Look at an HTML page the collection writes, in headless Chromium (Debian's ``chromium``).

    from look_at_page import look_at_page, visible_text
    dom, console, png = look_at_page("/tmp/report.html", "/tmp/artifacts/report.png")

One Chromium run loads the file, prints the DOM after load (``--dump-dom``), writes a screenshot
(``--screenshot``, 1280x2000) and logs the page's console to stderr (``--enable-logging=stderr --v=0``), where every
console message is a ``CONSOLE`` line::

    [pid:tid:MMDD/HHMMSS.micros:INFO:CONSOLE:5] "deliberate-error-123", source: file:///tmp/err.html (5)

That log line carries no level (console.log, console.error, an uncaught exception and a Content-Security-Policy
violation all read INFO), so every console message counts as an error: the pages run no script, and the only
messages they can cause are errors (a resource their CSP blocked, a parse problem).

Made for a loaded 2-CPU machine: a fresh temporary profile per run (``--user-data-dir``, removed afterwards), no
network (every host name resolves to nothing, background networking off; the pages fetch nothing anyway), a
timeout after which the whole process group is killed, and one retry when Chromium crashed or timed out. Standard
library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import html
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

# Debian's package installs /usr/bin/chromium (a wrapper script); CHROMIUM names another binary.
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CONSOLE_RE = re.compile(r"^\[[^\]]*:CONSOLE[:(]\d*\)?\]\s?(?P<message>.*)$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 120


class PageLookError(RuntimeError):
    """Chromium could not render the page (missing, crashed twice, timed out twice, wrote no screenshot)."""


def find_chromium():
    """The Chromium binary, or None."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named if os.path.isfile(named) and os.access(named, os.X_OK) else shutil.which(named)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def console_messages(stderr):
    """The page's console messages from Chromium's stderr log (the CONSOLE lines)."""
    out = []
    for line in stderr.splitlines():
        match = CONSOLE_RE.match(line.strip())
        if match:
            out.append(match.group("message"))
    return out


def visible_text(dom):
    """The text a person reads in a dumped DOM: no tags, no style or script, entities decoded, spaces collapsed."""
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def _run(cmd, timeout):
    """(rc, stdout, stderr) of cmd in its own process group; the group is killed on timeout (rc None)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = proc.communicate()
        return None, out, err


def look_at_page(path, png=None, width=1280, height=2000, timeout=TIMEOUT, chromium=None, attempts=2):
    """Render the HTML file ``path`` in headless Chromium: (DOM after load, console messages, screenshot path).

    ``png`` defaults to ``path`` with ``.png``. Raises PageLookError when Chromium is missing or fails twice.
    """
    binary = chromium or find_chromium()
    if not binary:
        raise PageLookError("no Chromium found (%s; or CHROMIUM=<path>): apt-get install chromium"
                            % ", ".join(CANDIDATES))
    path = os.path.abspath(path)
    png = os.path.abspath(png or os.path.splitext(path)[0] + ".png")
    parent = os.path.dirname(png)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    url = "file://" + path
    problems = []
    for attempt in range(1, attempts + 1):
        profile = tempfile.mkdtemp(prefix="edgeops-chromium-")
        if os.path.exists(png):
            os.remove(png)
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
               "--enable-logging=stderr", "--v=0", "--dump-dom", "--screenshot=" + png,
               "--window-size=%d,%d" % (width, height), "--hide-scrollbars",
               # No network: nothing to resolve, nothing in the background; the pages' own CSP blocks fetches too.
               "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking", "--no-first-run",
               "--no-default-browser-check", "--disable-extensions", "--disable-sync", "--disable-default-apps",
               "--disable-component-update", "--disable-dev-shm-usage", "--mute-audio", url]
        started = time.monotonic()
        try:
            rc, out, err = _run(cmd, timeout)
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        stderr = err.decode("utf-8", "replace")
        took = time.monotonic() - started
        if rc == 0 and os.path.isfile(png) and os.path.getsize(png) > 0:
            return out.decode("utf-8", "replace"), console_messages(stderr), png
        problems.append("attempt %d: %s after %.1f s; last lines: %s" % (
            attempt, "timed out" if rc is None else "exit %s" % rc, took,
            " | ".join(l for l in stderr.splitlines()[-5:] if l.strip())[-800:]))
    raise PageLookError("Chromium could not render %s: %s" % (path, "; ".join(problems)))


def is_png(path):
    with open(path, "rb") as handle:
        return handle.read(8) == PNG_MAGIC


def png_size(path):
    """(width, height) from the PNG's IHDR."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
