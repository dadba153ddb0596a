# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading YAML the controller did not write (fleet files, release manifests): strict, bounded, precise errors.

Pure functions (PyYAML only). The document is built from the parser's events, without PyYAML's composer and
constructor, because:

- the C composer recurses once per nesting level and crashes the process (SIGSEGV) on a few hundred kilobytes of
  ``[[[[...``; here nesting is a loop, capped at MAX_DEPTH;
- an alias is a copy of the anchored value, counted: the copies of all aliases together may hold at most
  max(ALIAS_NODES_FLOOR, size of the input in bytes) nodes, so a "billion laughs" is refused after a few
  milliseconds and megabytes, and nothing in the result is shared (whatever copies it later stays linear);
- a key given twice in a mapping is refused (yaml.safe_load keeps the last one silently), naming both lines;
- building from events is about three times faster than composing nodes first (a 10,000-device fleet file).

Otherwise the result is what yaml.safe_load returns (YAML 1.1 scalars, merge keys ``<<``, timestamps, !!binary,
!!set, !!omap, !!pairs), except that recursive anchors, anchors defined twice and collections as mapping keys are
refused. Tags outside YAML's own are refused unless the caller passes them as ``foreign_tags`` (Ansible's
``!vault`` and ``!unsafe`` in a fleet file): their values are read as if untagged and load_yaml() says that the
document needs the caller's own loader. Every error is a YAMLInputError naming the source, the line and column
(1-based) and, where the document got that far, the key path (``devices.dev01.tags[2]``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (AliasEvent, DocumentEndEvent, MappingEndEvent, MappingStartEvent, ScalarEvent,
                         SequenceEndEvent, SequenceStartEvent, StreamEndEvent)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

try:
    from yaml.cyaml import CParser as _Parser
    _PARSER_ARGS = ()
except ImportError:  # PyYAML without libyaml: the pure Python parser gives the same events (slower)
    from yaml.parser import Parser as _PythonParser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, _PythonParser):
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            _PythonParser.__init__(self)

        def dispose(self):
            pass

MAX_BYTES = 8 * 1024 * 1024
"""Larger input is refused before it is parsed (a fleet of 10,000 devices is about 1 MiB)."""
MAX_DEPTH = 100
"""Collections nested deeper than this are refused (also through aliases)."""
ALIAS_NODES_FLOOR = 100000
"""Aliases may copy max(ALIAS_NODES_FLOOR, input bytes) nodes in all: a merge key per device fits, a bomb not."""

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_INT = "tag:yaml.org,2002:int"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_BINARY = "tag:yaml.org,2002:binary"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_SET = "tag:yaml.org,2002:set"
_OMAP = "tag:yaml.org,2002:omap"
_PAIRS = "tag:yaml.org,2002:pairs"
_SCALARS = {_INT: "an integer", _BOOL: "true or false", _FLOAT: "a number", _TIMESTAMP: "a timestamp",
            _BINARY: "base64 data"}


class YAMLInputError(ValueError):
    """The input is refused: the message names the source, where in it, and what was expected."""


class _Refused(Exception):
    """Raised while building; load_yaml() adds the source and, on a second pass, what only that pass tracks."""

    def __init__(self, message, mark=None, path=None):
        Exception.__init__(self, message)
        self.message = message
        self.mark = mark
        self.path = path


class _Duplicate(_Refused):
    def __init__(self, key, mark):
        _Refused.__init__(self, "duplicate key", mark)
        self.key = key
        self.first = None


class _Events(_Parser, SafeConstructor, Resolver):
    """The parser's events, with the resolver and SafeConstructor's scalar constructors (no composer)."""

    def __init__(self, stream):
        _Parser.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


_NOKEY = object()  # the mapping being built waits for a key
_MERGE_KEY = object()  # the key being read is ``<<``
_EMPTY = object()  # no document, or one without content


def type_name(value):
    """What a value is, for error messages: 'a mapping', 'a list', 'a string', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    for kind, name in ((dict, "a mapping"), (list, "a list"), (str, "a string"), (int, "an integer"),
                       (float, "a number"), (bytes, "binary data"), (set, "a set"), (tuple, "a pair")):
        if isinstance(value, kind):
            return name
    return "a %s" % type(value).__name__


def _where(mark):
    return "line %d column %d" % (mark.line + 1, mark.column + 1) if mark is not None else ""


def _path_of(entries):
    """The key path from the (container, is mapping, pending key, frame) entries: mapping keys, list indexes."""
    parts = []
    for parent, parent_is_map, parent_key, _frame in entries:
        if parent is None:
            continue
        if parent_is_map:
            if parent_key is _NOKEY:
                break
            parts.append("<<" if parent_key is _MERGE_KEY else str(parent_key))
        else:
            parts.append("[%d]" % len(parent))
    if len(parts) > 10:
        parts = parts[:5] + ["..."] + parts[-4:]
    out = ""
    for part in parts:
        out += part if not out or part[0] == "[" or part == "..." else "." + part
    return out


def _short(tag):
    return tag.replace("tag:yaml.org,2002:", "!!")


def _copy(value):
    """A deep copy of what an alias refers to (plain data; depth <= MAX_DEPTH, so recursion is fine)."""
    cls = value.__class__
    if cls is dict:
        return dict((key, _copy(item)) for key, item in value.items())
    if cls is list:
        return [_copy(item) for item in value]
    if cls is set:
        return set(value)
    if cls is tuple:
        return tuple(_copy(item) for item in value)
    return value


def _scalar(events, tag, event):
    """A scalar of a YAML type other than str and null, as SafeConstructor makes it; a bad one is refused."""
    if tag in _SCALARS:
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark)
        try:
            return getattr(events, "construct_yaml_" + tag.rsplit(":", 1)[1])(node)
        except Exception:  # ValueError, KeyError, yaml errors, ...: SafeConstructor does not check first
            raise _Refused("expected %s (%s), got %r" % (_SCALARS[tag], _short(tag), event.value[:80]),
                           event.start_mark)
    if tag == _VALUE:  # a plain '=': what safe_load makes of it as a key
        return event.value
    raise _Refused("the tag %s is not allowed (plain data only)" % _short(tag), event.start_mark)


def _merge(mapping, sources, mark):
    """Merge keys (``<<``) into a mapping: its own keys win, then earlier sources over later ones."""
    merged = {}
    for source in sources:
        for item in source if isinstance(source, list) else [source]:
            if not isinstance(item, dict):
                raise _Refused("<<: expected a mapping or a list of mappings to merge, got %s" % type_name(item),
                               mark)
            for key, value in item.items():
                if key not in merged:
                    merged[key] = value
    for key, value in merged.items():
        if key not in mapping:
            mapping[key] = value


def _convert(kind, value, mark):
    """!!set, !!omap, !!pairs as safe_load makes them."""
    if kind == _SET:
        return set(value)
    pairs = []
    for item in value:
        if not isinstance(item, dict) or len(item) != 1:
            raise _Refused("%s: expected a list of one-key mappings, got %s" % (_short(kind), type_name(item)), mark)
        pairs.append(next(iter(item.items())))
    return pairs


def _build(raw, foreign_tags, track):
    """(document, foreign tag seen). ``track``: a second pass after a _Duplicate that remembers key lines."""
    events = _Events(raw)
    try:
        get = events.get_event
        resolve = events.resolve
        get()  # StreamStartEvent
        event = get()
        if event.__class__ is StreamEndEvent:
            return _EMPTY, False
        alias_budget = max(ALIAS_NODES_FLOOR, len(raw))
        copied = 0
        count = 0
        anchors = {}  # name -> (value, nodes, height)
        resolved = {}  # plain scalar text -> its tag
        open_anchors = set()
        foreign = False
        root = _EMPTY
        # the collection being built: the container, whether a mapping, its pending key and its frame
        # [anchor, count at start, kind, merge sources, height of its tallest child, key lines, start mark]
        cur, is_map, key, frame = None, False, _NOKEY, None
        stack = []
        while True:
            event = get()
            cls = event.__class__
            height = 0
            if cls is ScalarEvent:
                count += 1
                tag = event.tag
                if tag is None or tag == "!":  # quoted: a string; plain: what the YAML 1.1 resolver says
                    if event.implicit[0]:
                        # A plain scalar's tag depends on its text alone; keys and values repeat (site:, tags:).
                        tag = resolved.get(event.value)
                        if tag is None:
                            tag = resolved[event.value] = resolve(ScalarNode, event.value, event.implicit)
                    else:
                        tag = _STR
                if tag == _STR:
                    value = event.value
                elif tag == _NULL:
                    value = None
                elif tag == _MERGE:
                    value = _MERGE_KEY if is_map and key is _NOKEY else "<<"
                elif tag in foreign_tags:
                    foreign = True
                    value = event.value
                else:
                    value = _scalar(events, tag, event)
                anchor = event.anchor
                if anchor is not None:
                    if anchor in anchors or anchor in open_anchors:
                        raise _Refused("the anchor &%s is defined twice" % anchor, event.start_mark)
                    anchors[anchor] = ("<<" if value is _MERGE_KEY else value, 1, 0)
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                mapping = cls is MappingStartEvent
                if is_map and key is _NOKEY:
                    raise _Refused("expected a scalar as a mapping key, got %s (a mapping key must be a string, "
                                   "number, true/false or null)" % ("a mapping" if mapping else "a list"),
                                   event.start_mark)
                if len(stack) >= MAX_DEPTH:
                    raise _Refused("collections nested more than %d deep" % MAX_DEPTH, event.start_mark)
                tag = event.tag
                kind = None
                if tag is not None and tag != "!" and tag != (_MAP if mapping else _SEQ):
                    if tag in foreign_tags:
                        foreign = True
                    elif tag == _SET if mapping else tag in (_OMAP, _PAIRS):
                        kind = tag
                    else:
                        raise _Refused("the tag %s is not allowed on a %s (plain data only)" % (
                            _short(tag), "mapping" if mapping else "list"), event.start_mark)
                anchor = event.anchor
                if anchor is not None:
                    if anchor in anchors or anchor in open_anchors:
                        raise _Refused("the anchor &%s is defined twice" % anchor, event.start_mark)
                    open_anchors.add(anchor)
                stack.append((cur, is_map, key, frame))
                frame = [anchor, count, kind, None, 0, {} if track else None, event.start_mark]
                count += 1
                cur, is_map, key = ({} if mapping else []), mapping, _NOKEY
                continue
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                value = cur
                anchor, start, kind, merges, height, _lines, mark = frame  # pylint: disable=unpacking-non-sequence
                try:
                    if merges is not None:
                        _merge(value, merges, mark)
                    if kind is not None:
                        value = _convert(kind, value, mark)
                except _Refused as exc:
                    exc.path = _path_of(stack)  # the path of this collection, not of its next item
                    raise
                height += 1
                cur, is_map, key, frame = stack.pop()
                if anchor is not None:
                    open_anchors.discard(anchor)
                    anchors[anchor] = (value, count - start, height)
            elif cls is AliasEvent:
                entry = anchors.get(event.anchor)
                if entry is None:
                    raise _Refused("the alias *%s refers to %s" % (
                        event.anchor, "the collection it is in" if event.anchor in open_anchors
                        else "no anchor defined before it"), event.start_mark)
                value, nodes, height = entry
                copied += nodes
                if copied > alias_budget:
                    raise _Refused("aliases expand to more than %d nodes (nested aliases that multiply?)"
                                   % alias_budget, event.start_mark)
                if len(stack) + height > MAX_DEPTH:
                    raise _Refused("collections nested more than %d deep (through the alias *%s)"
                                   % (MAX_DEPTH, event.anchor), event.start_mark)
                if height:
                    value = _copy(value)
                count += nodes
            elif cls is DocumentEndEvent:
                break
            else:  # the parser yields nothing else inside a document
                raise _Refused("unexpected %s" % cls.__name__, event.start_mark)
            if height and frame is not None and height > frame[4]:
                frame[4] = height
            if is_map:
                if key is _NOKEY:
                    if height:
                        raise _Refused("expected a scalar as a mapping key, got %s (an alias of a collection)"
                                       % type_name(value), event.start_mark)
                    if value is _MERGE_KEY:
                        if frame[3] is not None:
                            raise _Duplicate(_MERGE_KEY, event.start_mark)
                    elif value in cur:
                        raise _Duplicate(value, event.start_mark)
                    if track:
                        frame[5][value] = event.start_mark
                    key = value
                else:
                    if key is _MERGE_KEY:
                        if frame[3] is None:
                            frame[3] = []
                        frame[3].append(value)
                    else:
                        cur[key] = value
                    key = _NOKEY
            elif cur is not None:
                cur.append(value)
            else:
                root = value
        event = get()
        if event.__class__ is not StreamEndEvent:
            raise _Refused("expected one document, found another one", event.start_mark)
        return root, foreign
    except _Refused as exc:
        if exc.path is None:
            exc.path = _path_of(stack + [(cur, is_map, key, frame)])
        if isinstance(exc, _Duplicate) and track:
            exc.first = frame[5].get(exc.key)
        raise
    finally:
        events.dispose()


def _error_position(raw, exc):
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return _where(mark)
    position = getattr(exc, "position", None)  # ReaderError: an offset into the input
    if isinstance(position, int):
        return "byte offset %d (line %d)" % (position, raw.count(b"\n", 0, position) + 1)
    return ""


def load_yaml(data, source, foreign_tags=()):
    """Parse one YAML document: ``(value, foreign)``.

    ``data`` is bytes (or str); ``source`` names it in errors (the file). ``value`` is None for an empty input.
    ``foreign`` tells whether a tag in ``foreign_tags`` was used: the value then has those nodes untagged, and the
    caller should load the (now checked) input with its own loader. Raises YAMLInputError.
    """
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise YAMLInputError("%s: character %d is not valid Unicode (%s)" % (source, exc.start, exc.reason))
    if not isinstance(data, bytes):
        raise YAMLInputError("%s: expected the document as bytes or text, got %s" % (source, type_name(data)))
    if len(data) > MAX_BYTES:
        raise YAMLInputError("%s: %d bytes, more than the limit of %d" % (source, len(data), MAX_BYTES))
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YAMLInputError("%s: not UTF-8: byte 0x%02x at byte offset %d (line %d)" % (
            source, data[exc.start], exc.start, data.count(b"\n", 0, exc.start) + 1))
    foreign_tags = frozenset(foreign_tags)
    try:
        try:
            value, foreign = _build(data, foreign_tags, track=False)
        except _Duplicate:
            value, foreign = _build(data, foreign_tags, track=True)  # raises again, with the first line known
    except _Duplicate as exc:
        key = "<<" if exc.key is _MERGE_KEY else exc.key
        raise YAMLInputError("%s: %s%s: the key %r is given twice, at line %s and line %d (the keys of a mapping "
                             "must be unique)" % (source, _where(exc.mark), " (in %s)" % exc.path if exc.path else "",
                                                  key, exc.first.line + 1 if exc.first else "?", exc.mark.line + 1))
    except _Refused as exc:
        raise YAMLInputError("%s: %s%s: %s" % (source, _where(exc.mark),
                                               " (at %s)" % exc.path if exc.path else "", exc.message))
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        context = getattr(exc, "context", None)
        where = _error_position(data, exc)
        raise YAMLInputError("%s: %s%snot valid YAML: %s%s" % (
            source, where, ": " if where else "", problem, (" (%s)" % context) if context else ""))
    return (None if value is _EMPTY else value), foreign


def read_input(path, source=None, max_bytes=MAX_BYTES):
    """The bytes of a file, refused (YAMLInputError) when larger than ``max_bytes``, before reading it all."""
    source = source or path
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise YAMLInputError("%s: %d bytes, more than the limit of %d" % (source, size, max_bytes))
            data = handle.read(max_bytes + 1)
    except (IOError, OSError) as exc:
        raise YAMLInputError("%s: cannot read: %s" % (source, exc.strerror or exc))
    if len(data) > max_bytes:  # grew while read, or not a regular file
        raise YAMLInputError("%s: more than the limit of %d bytes" % (source, max_bytes))
    return data


def expect_mapping(value, source, empty=False):
    """``value`` if it is a mapping; else a YAMLInputError saying what the document is instead."""
    if isinstance(value, dict):
        return value
    if value is None and empty:
        raise YAMLInputError("%s: empty, expected a mapping" % source)
    raise YAMLInputError("%s: expected a mapping at the top of the document, got %s" % (source, type_name(value)))


def read_yaml_mapping(path_or_bytes, source=None):
    """A YAML document that must be a mapping (a release manifest, a fleet file without Ansible tags).

    ``path_or_bytes``: the content (bytes) or a file's path (str); ``source`` names it in errors (default: the path,
    or ``<input>``). Raises YAMLInputError: too large, not UTF-8, not YAML (line and column), a duplicate key (both
    lines), an alias bomb, a tag beyond plain data, empty ("<source>: empty, expected a mapping") or not a mapping.
    """
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
        source = source or "<input>"
    else:
        path = os.fspath(path_or_bytes)
        source = source or path
        data = read_input(path, source)
    value, _foreign = load_yaml(data, source)
    return expect_mapping(value, source, empty=True)
