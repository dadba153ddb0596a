# -*- coding: utf-8 -*-
# Copyright: edgeops.fleet contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decisions of the store: which generations gc keeps, what boot recovery does, which images are used."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .errors import GenerationError


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def next_generation_id(existing):
    return max([0] + [int(i) for i in existing]) + 1


def gc_plan(ids, keep, protected):
    """Split generation ids into (kept, removed): the newest ``keep`` plus every protected one."""
    if not is_int(keep) or keep < 1:
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
