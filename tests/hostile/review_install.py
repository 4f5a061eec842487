"""Issue 13, install: a prefix oemkit did not lay out, planted links, a forged journal,
damaged ``slot.json`` files and an unpack DEST that is a symbolic link.

Every case is a whole command (kind ``cli``) on a scratch folder ``{work}`` that the
case's ``setup`` prepares: a ``prefix`` with the planted entries and, beside it, data
that must survive (``shared-data/``, ``victim/``). The corpus test checks the code and
the exit status; ``test_review_install.py`` runs the same setups and asserts that every
planted file still exists afterwards, and that nothing was created or removed.
"""

from __future__ import annotations

import json
from typing import Any

from hostile.make_corpus import Corpus, Forge
from oemkit.crypto.keys import PrivateKeyInfo

VALID = "{corpus}/control-bundle-valid.oemb"
TRUST = "{corpus}/trust-root.json"
PREFIX = "{work}/prefix"
SLOT = "hostile-1.0.0-0123456789ab"
INSTALL = ["install", VALID, "--prefix", PREFIX, "--trust", TRUST, "--skip-smoke",
           "--state", "{tmp}/state.json", "--json"]
UPGRADE = ["upgrade", VALID, "--prefix", PREFIX, "--trust", TRUST, "--skip-smoke",
           "--state", "{tmp}/state.json", "--json"]
ROLLBACK = ["rollback", "--prefix", PREFIX, "--json"]
STATUS = ["status", "--prefix", PREFIX, "--json"]
#: Data a planted ``slots -> ../shared-data`` would expose to cleanup (the review lost
#: ``db/`` and ``photos/``).
SHARED = {"dirs": ["shared-data/db", "shared-data/photos"],
          "files": {"shared-data/db/data.sqlite": "rows\n",
                    "shared-data/photos/cat.jpg": "jpeg\n"}}


def slot_json(**over: Any) -> str:
    doc = {"name": SLOT, "bundle_name": "hostile", "version": "1.0.0",
           "manifest_sha256": "0123456789ab" + "0" * 52, "bundle_file": "/x.oemb",
           "installed_at": "2024-01-01T00:00:00Z", "oemkit_version": "0.1.0",
           "config_version": None, "python": "/usr/bin/python3"}
    doc.update(over)
    return json.dumps(doc) + "\n"


def _merge(*setups: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for setup in setups:
        for key, value in setup.items():
            if isinstance(value, list):
                out.setdefault(key, []).extend(value)
            else:
                out.setdefault(key, {}).update(value)
    return out


def _describe(setup: dict[str, Any]) -> bytes:
    return (json.dumps({"setup": setup}, indent=2, sort_keys=True) + "\n").encode()


#: (file, tries, setup, command, code, exit): the cases, shared with the pytest that checks
#: that the planted data survives.
CASES: list[tuple[str, str, dict[str, Any], list[str], str | None, int]] = [
    ("review-install-slots-symlink-install.json",
     "install into a prefix whose slots/ is a symlink to ../shared-data (the old cleanup "
     "deleted db/ and photos/ there): refused, nothing followed or removed",
     _merge(SHARED, {"dirs": ["prefix"], "symlinks": {"prefix/slots": "../shared-data"}}),
     INSTALL, "E_PREFIX_LAYOUT", 3),
    ("review-install-slots-symlink-upgrade.json",
     "upgrade with slots -> ../shared-data and a current link into it",
     _merge(SHARED, {"dirs": ["prefix"], "symlinks": {"prefix/slots": "../shared-data",
                                                      "prefix/current": "slots/db"}}),
     UPGRADE, "E_PREFIX_LAYOUT", 3),
    ("review-install-slots-symlink-rollback.json",
     "rollback with slots -> ../shared-data and current/previous links into it",
     _merge(SHARED, {"dirs": ["prefix"], "symlinks": {
         "prefix/slots": "../shared-data", "prefix/current": "slots/db",
         "prefix/previous": "slots/photos"}}),
     ROLLBACK, "E_PREFIX_LAYOUT", 3),
    ("review-install-slots-symlink-status.json",
     "status (read-only) of a prefix whose slots/ is a symlink: refused, not listed "
     "through the link",
     _merge(SHARED, {"dirs": ["prefix"], "symlinks": {"prefix/slots": "../shared-data"}}),
     STATUS, "E_PREFIX_LAYOUT", 3),
    ("review-install-slot-entry-symlink.json",
     "a slot entry that is a symlink to shared data (slots/evil -> ../../shared-data)",
     _merge(SHARED, {"dirs": ["prefix/slots"], "symlinks": {
         "prefix/slots/evil": "../../shared-data"}}),
     INSTALL, "E_PREFIX_LAYOUT", 3),
    ("review-install-cache-tmp-dir.json",
     "a directory named .cache.tmp in the prefix (the old cleanup unlinked every .*.tmp "
     "and crashed on it): refused, listed by name, left alone",
     {"dirs": ["prefix/slots", "prefix/.cache.tmp/keep"],
      "files": {"prefix/.cache.tmp/keep/notes.txt": "mine\n"}},
     INSTALL, "E_PREFIX_LAYOUT", 3),
    ("review-install-foreign-file.json",
     "a prefix holding files oemkit does not make (an existing application directory)",
     {"dirs": ["prefix/bin"], "files": {"prefix/bin/app": "#!/bin/sh\n",
                                        "prefix/README": "not oemkit's\n"}},
     INSTALL, "E_PREFIX_LAYOUT", 3),
    ("review-install-lock-symlink.json",
     "a planted .lock symlink to a file outside the prefix: refused before it is opened "
     "(never created, truncated or locked through the link)",
     {"dirs": ["prefix/slots"], "files": {"victim/passwd": "root:x:0:0\n"},
      "symlinks": {"prefix/.lock": "../victim/passwd"}},
     ROLLBACK, "E_PREFIX_LAYOUT", 3),
    ("review-install-lock-dangling-symlink.json",
     "a dangling .lock symlink (opening it with O_CREAT would create its target)",
     {"dirs": ["prefix/slots", "victim"], "symlinks": {"prefix/.lock": "../victim/new"}},
     INSTALL, "E_PREFIX_LAYOUT", 3),
    ("review-install-lock-directory.json", "a .lock that is a directory",
     {"dirs": ["prefix/slots", "prefix/.lock"]}, INSTALL, "E_PREFIX_LAYOUT", 3),
    ("review-install-current-outside.json",
     "current -> /etc (a link out of the prefix): refused, never resolved",
     {"dirs": ["prefix/slots"], "symlinks": {"prefix/current": "/etc"}},
     UPGRADE, "E_PREFIX_LAYOUT", 3),
    ("review-install-current-traversal.json",
     "current -> slots/../../shared-data",
     _merge(SHARED, {"dirs": ["prefix/slots"], "symlinks": {
         "prefix/current": "slots/../../shared-data"}}),
     ROLLBACK, "E_PREFIX_LAYOUT", 3),
    ("review-install-current-directory.json",
     "current is a real directory, not a link",
     {"dirs": ["prefix/slots", "prefix/current/data"]}, INSTALL, "E_PREFIX_LAYOUT", 3),
    ("review-install-prefix-is-a-file.json", "--prefix names a regular file",
     {"files": {"prefix": "a file\n"}}, INSTALL, "E_PREFIX_LAYOUT", 3),
    ("review-install-journal-traversal.json",
     "a forged journal listing slots/../../victim: refused, nothing it lists is removed",
     {"dirs": ["prefix/slots", "victim"], "files": {
         "victim/keep.txt": "mine\n",
         "prefix/.journal": json.dumps({"format": "oemkit-prefix-journal/v1",
                                        "pending": ["slots/../../victim"]})}},
     INSTALL, "E_PREFIX_JOURNAL", 3),
    ("review-install-journal-foreign-name.json",
     "a forged journal listing a top-level name oemkit never makes (db)",
     {"dirs": ["prefix/slots"], "files": {
         "prefix/.journal": json.dumps({"format": "oemkit-prefix-journal/v1",
                                        "pending": ["db"]})}},
     ROLLBACK, "E_PREFIX_JOURNAL", 3),
    ("review-install-journal-not-json.json", "a journal that is not JSON",
     {"dirs": ["prefix/slots"], "files": {"prefix/.journal": "[[[\n"}},
     INSTALL, "E_PREFIX_JOURNAL", 3),
    ("review-install-journal-symlink.json",
     "a journal that is a symlink to a file elsewhere",
     {"dirs": ["prefix/slots"], "files": {"victim/passwd": "root:x:0:0\n"},
      "symlinks": {"prefix/.journal": "../victim/passwd"}},
     INSTALL, "E_PREFIX_LAYOUT", 3),
    ("review-install-status-slot-json-array.json",
     "status when the current slot's slot.json holds [] (was a TypeError): listed as "
     "incomplete with the problem, exit 0",
     {"copies": {f"prefix/slots/{SLOT}/slot.json": "{file}"},
      "symlinks": {"prefix/current": f"slots/{SLOT}"}},
     STATUS, None, 0),
    ("review-install-status-slot-json-types.json",
     "status when slot.json has a number for its name and an object for its version",
     {"copies": {f"prefix/slots/{SLOT}/slot.json": "{file}"}}, STATUS, None, 0),
    ("review-install-status-slot-json-markup.json",
     "status when slot.json's version and install time hold rich markup and ANSI escapes "
     "(the table crashed with MarkupError): listed as incomplete, never printed",
     {"copies": {f"prefix/slots/{SLOT}/slot.json": "{file}"}}, STATUS, None, 0),
    ("review-install-status-slot-json-deep.json",
     "status when slot.json is 5,000 nested arrays",
     {"copies": {f"prefix/slots/{SLOT}/slot.json": "{file}"}}, STATUS, None, 0),
    ("review-install-status-slot-json-symlink.json",
     "status when slot.json is a symlink to a file outside the prefix: not read",
     {"dirs": [f"prefix/slots/{SLOT}"], "files": {"victim/passwd": "root:x:0:0\n"},
      "symlinks": {f"prefix/slots/{SLOT}/slot.json": "{work}/victim/passwd"}},
     STATUS, None, 0),
    ("review-install-rollback-previous-damaged.json",
     "rollback to a previous slot whose slot.json holds []: refused, current unchanged",
     {"dirs": [f"prefix/slots/{SLOT}", "prefix/slots/hostile-0.9.0-0123456789ab"],
      "files": {f"prefix/slots/{SLOT}/slot.json": slot_json(),
                "prefix/slots/hostile-0.9.0-0123456789ab/slot.json": "[]"},
      "symlinks": {"prefix/current": f"slots/{SLOT}",
                   "prefix/previous": "slots/hostile-0.9.0-0123456789ab"}},
     ROLLBACK, "E_SLOT_DAMAGED", 3),
    ("review-install-upgrade-current-damaged.json",
     "upgrade when the current slot's slot.json holds []: the installed version is "
     "unknown, so the version check fails closed (--allow-downgrade to replace it)",
     {"copies": {f"prefix/slots/{SLOT}/slot.json": "{file}"},
      "symlinks": {"prefix/current": f"slots/{SLOT}"}},
     UPGRADE, "E_SLOT_DAMAGED", 3),
    ("review-install-legacy-leftovers-kept.json",
     "a prefix left by an older oemkit (no journal) with a staging slot and a switch "
     "symlink of an interrupted run: no journal means nothing to clean, and install works",
     {"dirs": ["prefix/slots/.tmp-abcd1234/bundle"], "files": {
         "prefix/slots/.tmp-abcd1234/bundle/partial": "x\n"},
      "symlinks": {"prefix/.current.4242.tmp": "slots/.tmp-abcd1234"}},
     INSTALL, None, 0),
    ("review-install-unpack-dest-symlink.json",
     "unpack into a DEST that is a symlink to another directory (it staged in the link's "
     "target): refused, nothing written there",
     {"dirs": ["real"], "symlinks": {"dest": "{work}/real"}},
     ["unpack", VALID, "{work}/dest", "--trust", TRUST, "--json"], "E_DEST_SYMLINK", 3),
    ("review-install-unpack-dest-dangling.json",
     "unpack into a DEST that is a dangling symlink",
     {"dirs": ["real"], "symlinks": {"dest": "{work}/real/absent"}},
     ["unpack", VALID, "{work}/dest", "--trust", TRUST, "--json"], "E_DEST_SYMLINK", 3),
    ("review-install-unpack-rejected-new-parents.json",
     "unpack of a bundle the root rejects into new/deep/dest: no created parent is left",
     {"dirs": ["out"]},
     ["unpack", "{corpus}/bundle-signature-unknown-key.oemb", "{work}/out/new/deep/dest",
      "--trust", TRUST, "--json"], "E_SIGNATURE_UNTRUSTED", 1),
]


#: Cases whose file is what the setup plants (copied into place as "{file}").
PLANTED = {"review-install-status-slot-json-array.json": b"[]",
           "review-install-status-slot-json-types.json": slot_json(
               name=5, version={"x": 1}).encode(),
           "review-install-status-slot-json-deep.json": b"[" * 5_000,
           "review-install-status-slot-json-markup.json": slot_json(
               version="[/x] \x1b[2K\r\x1b[1;32mVERIFIED", installed_at="[bold]x").encode(),
           "review-install-upgrade-current-damaged.json": b"[]"}


def resolve(setup: dict[str, Any], file: str) -> dict[str, Any]:
    """``setup`` with "{file}" in its copies replaced by the case's file name."""
    copies = {k: v.replace("{file}", file) for k, v in setup.get("copies", {}).items()}
    return {**setup, "copies": copies} if copies else setup


def cases(c: Corpus, forge: Forge, keys: dict[str, PrivateKeyInfo]) -> None:
    for file, tries, setup, command, code, exit_code in CASES:
        setup = resolve(setup, file)
        c.add(file, "cli", tries, PLANTED.get(file) or _describe(setup), code, exit_code,
              command=command, setup=setup)
