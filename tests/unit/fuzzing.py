# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the property-based fuzzing tests share: settings, a strategy of YAML-like data, and the two ways an input
is damaged (bytes of a file edited, values of its data replaced or keys renamed), as a careless edit would."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from conftest import in_ci


def fuzz_settings(max_examples):
    """Bounded examples, no example database (nothing written into the checkout), derandomized with CI=true."""
    return settings(max_examples=max_examples, deadline=datetime.timedelta(seconds=2), derandomize=in_ci(),
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                    st.dates(),
                    st.sampled_from(["", "0", "1", "yes", "256m", "1.5", "-1", "10s", "http://127.0.0.1:8080/",
                                     "127.0.0.1", "10.0.0.0/8", "fd00::/64", "site", "any", "tcp", "CMD"]))
keys = st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none())
data = st.recursive(
    scalars, lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=5)),
    max_leaves=30)


def paths(value, prefix=()):
    """Every path to a value inside the data: keys of mappings, indexes of lists."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, prefix + (index,))


def mutate_bytes(draw, raw, inserts, most=4):
    """Up to `most` edits of a file's bytes: insert what `inserts` draws, delete, replace a byte, duplicate a line."""
    for _step in range(draw.draw(st.integers(1, most), label="mutations")):
        at = draw.draw(st.integers(0, len(raw)), label="at")
        kind = draw.draw(st.sampled_from(["insert", "delete", "replace", "duplicate line"]), label="kind")
        if kind == "insert":
            raw = raw[:at] + draw.draw(inserts, label="text") + raw[at:]
        elif kind == "delete":
            raw = raw[:at] + raw[at + draw.draw(st.integers(1, 40), label="length"):]
        elif kind == "replace":
            raw = raw[:at] + draw.draw(st.binary(min_size=1, max_size=3), label="bytes") + raw[at + 1:]
        else:
            start = raw.rfind(b"\n", 0, at) + 1
            end = raw.find(b"\n", at)
            line = raw[start:end + 1 if end >= 0 else len(raw)]
            raw = raw[:start] + line + line + raw[start + len(line):]
    return raw


def mutate_data(draw, value, most=3):
    """Up to `most` edits of the data: the value at a random path replaced by random data, or its key renamed."""
    for _step in range(draw.draw(st.integers(1, most), label="mutations")):
        path = draw.draw(st.sampled_from(sorted(paths(value), key=repr)), label="path")
        replacement = draw.draw(data, label="value")
        if not path:
            value = replacement
            continue
        parent = value
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and draw.draw(st.booleans(), label="rename the key"):
            parent[replacement if isinstance(replacement, (str, int, type(None))) else "x"] = parent.pop(path[-1])
        else:
            parent[path[-1]] = replacement
    return value
