# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nftables pieces shared by generations (our ``inet edgeops`` table) and the ``edgeops.fleet.nftables`` module:
the check that a text only defines one table, the nft transactions that replace or remove it, running an nft
script, and the fingerprint of a listing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import tempfile

from .errors import GenerationError
from .sysio import sha256_bytes

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
NFT_FAMILY = "inet"
NFT_TABLE = "edgeops"

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
_DEFINE_RE = re.compile(r"^define\s+[A-Za-z_][A-Za-z0-9_]*\s*=", re.S)
_TABLE_RE = re.compile(r"^table\s+(\S+)\s+(\S+?)\s*\{", re.S)
_INCLUDE_RE = re.compile(r"(^|[\s;{])include(\s|\")")


class NftError(Exception):
    """A refusal or failure with a message for the user."""


def check_name(table, family):
    """Refuse a table name or family that could not be put on an nft command line as is."""
    if family not in FAMILIES:
        raise NftError("family must be one of %s, got %r" % (", ".join(FAMILIES), family))
    if not isinstance(table, str) or not _NAME_RE.match(table):
        raise NftError("table must be a name of letters, digits, '_', '.' or '-' (1-63 characters, not starting "
                       "with a digit), got %r" % (table,))


def _strip_comments(text):
    """The text without ``#`` comments (outside double quotes), newlines kept."""
    out = []
    in_string = False
    in_comment = False
    for char in text:
        if in_comment:
            if char == "\n":
                in_comment = False
                out.append(char)
            continue
        if char == '"':
            in_string = not in_string
        elif char == "#" and not in_string:
            in_comment = True
            continue
        elif char == "\n" and in_string:
            raise NftError("content: a string (\"...\") runs past the end of a line")
        out.append(char)
    if in_string:
        raise NftError("content: a string (\"...\") is not closed")
    return "".join(out)


def top_level_statements(text):
    """Split nft text into its top-level statements (newline or ``;`` separated, braces kept together)."""
    text = _strip_comments(text)
    statements = []
    current = []
    depth = 0
    in_string = False
    line = 1
    start_line = 1
    for char in text:
        if char == '"':
            in_string = not in_string
        elif not in_string:
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth < 0:
                    raise NftError("content: unbalanced '}' on line %d" % line)
            elif char in "\n;" and depth == 0:
                stmt = "".join(current).strip()
                if stmt:
                    statements.append((start_line, stmt))
                current = []
                if char == "\n":
                    line += 1
                start_line = line
                continue
        if char == "\n":
            line += 1
        if not current or not "".join(current).strip():
            start_line = line
        current.append(char)
    if depth != 0:
        raise NftError("content: %d '{' not closed at the end" % depth)
    stmt = "".join(current).strip()
    if stmt:
        statements.append((start_line, stmt))
    return statements


def check_content(text, family, table):
    """Refuse content that would do anything but define ``table <family> <table>``.

    Allowed at the top level: ``define`` and ``table <family> <table> { ... }`` blocks (at least one).
    Refused anywhere: ``include``. Returns the text unchanged.
    """
    check_name(table, family)
    if not isinstance(text, str) or not text.strip():
        raise NftError("content is empty: it must define table %s %s { ... }" % (family, table))
    stripped = _strip_comments(text)
    if re.search(r"(^|[\s;])flush\s+ruleset", stripped):
        raise NftError("content must not contain 'flush ruleset': it may only define table %s %s" % (family, table))
    if _INCLUDE_RE.search(stripped):
        raise NftError("content must not contain 'include': give the whole table %s %s" % (family, table))
    tables = 0
    for line, stmt in top_level_statements(text):
        if _DEFINE_RE.match(stmt):
            continue
        match = _TABLE_RE.match(stmt)
        if match and stmt.endswith("}"):
            found = (match.group(1), match.group(2))
            if found != (family, table):
                raise NftError("content may only define table %s %s, found table %s %s (line %d)"
                               % (family, table, found[0], found[1], line))
            tables += 1
            continue
        first = stmt.split(None, 1)[0] if stmt.split() else stmt
        hint = " (give the table's family: table %s %s { ... })" % (family, table) if first == "table" else ""
        raise NftError("content may only hold 'define' and 'table %s %s { ... }' at the top level; line %d "
                       "starts with %r%s" % (family, table, line, stmt[:60], hint))
    if not tables:
        raise NftError("content does not define table %s %s { ... }" % (family, table))
    return text


def check_nft_ruleset(text):
    """Refuse a release ruleset that would do anything but define our own ``inet edgeops`` table."""
    try:
        check_content(text, NFT_FAMILY, NFT_TABLE)
    except NftError as exc:
        raise GenerationError("release.nftables: %s" % exc, artifact="nftables.nft")


def absent_script(family, table):
    """One transaction that leaves the table absent, whether or not it exists."""
    return "table %s %s {}\ndelete table %s %s\n" % (family, table, family, table)


def replace_script(family, table, content):
    """One transaction that replaces the table by ``content`` (create-if-absent, delete, define): the table is
    either the old one or the new one, never a mix."""
    return absent_script(family, table) + content.rstrip() + "\n"


def nft_replace_script(text):
    """The transaction that replaces our table by a release's ruleset."""
    return replace_script(NFT_FAMILY, NFT_TABLE, text)


def with_script(script, action, directory=None):
    """Write an nft script to a temporary file, return ``action(path)``; the file is removed afterwards."""
    fd, path = tempfile.mkstemp(prefix=".edgeops-nft-", suffix=".nft", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(script)
        return action(path)
    finally:
        os.unlink(path)


def nft_fingerprint(listing):
    """sha256 of an ``nft -s list table`` output, ignoring blank lines, comments and indentation."""
    lines = [line.strip() for line in listing.splitlines() if line.strip() and not line.strip().startswith("#")]
    return sha256_bytes("\n".join(lines).encode("utf-8"))
