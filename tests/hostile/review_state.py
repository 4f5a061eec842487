"""Issue 13, the license state file (class 8, state part): hostile state files and state
paths given to ``oemkit license verify --state``.

Content that is not a state file (too deep, ``Infinity``/``1e400``/negative/``true``/
fractional counters, a CRL that is not text, an issuer that is not an object, duplicate
keys) is set aside as ``<name>.corrupt`` with a warning and the license is judged (exit
0; test_review_state.py checks the warning). A path oemkit cannot use at all (a directory,
a parent that is a file) is a coded error before any verdict (exit 4). What the state
remembers keeps working: an observed time after the expiry turns a clock set back into
E_CLOCK_ROLLBACK, and a remembered CRL still revokes.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hostile.make_corpus import ISSUED, TRUST, Corpus, Forge
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.release.licensing import issue_crl

STATE_TYPE = "oemkit-license-state/v2"
VERIFY = ["license", "verify", "{corpus}/control-license-valid.lic", "--trust",
          "{corpus}/" + TRUST, "--state", "{work}/state.json", "--json"]
#: Deep enough for Python's json recursion limit, small enough for the corpus.
DEPTH = 1500


def state_doc(**issuer: Any) -> dict[str, Any]:
    """A v2 state with one issuer (no root keys: the first trust root adopts it)."""
    entry = {"root_keys": [], "crl": None, "crl_seq": 0, "seqs": {}, **issuer}
    return {"type": STATE_TYPE, "last_seen": None, "issuers": [entry]}


def _json(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def cases(c: Corpus, forge: Forge, keys: dict[str, PrivateKeyInfo]) -> None:
    del forge

    def state(name: str, tries: str, data: bytes, code: str | None = None,
              exit_code: int = 0) -> None:
        file = f"review-state-{name}.json"
        c.add(file, "cli", tries, data, code, exit_code, command=VERIFY,
              setup={"copies": {"state.json": file}})

    # ---- content that is not a state file: set aside with a warning, license judged
    deep = ('{"type": "' + STATE_TYPE + '", "last_seen": null, "issuers": '
            + "[" * DEPTH + "]" * DEPTH + "}\n")
    state("deep-nesting", f"a state file nested {DEPTH} levels deep: set aside as corrupt "
          "with a warning, the license judged (was RecursionError)", deep.encode())
    inf = _json(state_doc()).replace(b'"crl_seq": 0', b'"crl_seq": Infinity')
    state("infinity-counter", "crl_seq written as the non-standard constant Infinity: set "
          "aside as corrupt (was OverflowError from int(inf))", inf)
    state("1e400-counter", "crl_seq 1e400 (a float that overflows to infinity): set aside as "
          "corrupt (was OverflowError)",
          _json(state_doc()).replace(b'"crl_seq": 0', b'"crl_seq": 1e400'))
    state("1e400-seq", "a re-issue number 1e400: set aside as corrupt (only exact integers "
          "count)", _json(state_doc(seqs={"acme-vision": 0}))
          .replace(b'"acme-vision": 0', b'"acme-vision": 1e400'))
    state("negative-counter", "crl_seq -1: set aside as corrupt (counters are non-negative)",
          _json(state_doc(crl_seq=-1)))
    state("true-counter", "a re-issue number written as true: set aside as corrupt (true is "
          "not the number 1)", _json(state_doc(seqs={"acme-vision": True})))
    state("fraction-counter", "crl_seq 2.5: set aside as corrupt (was silently truncated to "
          "2)", _json(state_doc(crl_seq=2.5)))
    state("crl-not-text", "crl is the number 5: set aside as corrupt (was silently read as "
          "no CRL)", _json(state_doc(crl=5)))
    state("crl-not-ascii", "crl is text with a non-ASCII character: set aside as corrupt",
          _json(state_doc(crl="-----BEGIN OEMKIT CRL-----\n\u00e9\n")))
    state("issuer-not-object", "an issuers entry that is a string: set aside as corrupt",
          _json({"type": STATE_TYPE, "last_seen": None, "issuers": ["acme"]}))
    state("duplicate-key", "a state file with two type keys: set aside as corrupt (strict "
          "JSON, as every document oemkit reads)",
          b'{"type": "oemkit-license-state/v1", "type": "' + STATE_TYPE.encode()
          + b'", "last_seen": null, "issuers": []}\n')

    # ---- what the state remembers keeps working
    after_expiry = {**state_doc(), "last_seen": "2100-06-01T00:00:00Z"}
    state("last-seen-after-expiry", "a state that observed 2100-06-01 (after the control "
          "license's expiry, recorded by the E_EXPIRED rejection itself): the clock set back "
          "to today is E_CLOCK_ROLLBACK, not VALID", _json(after_expiry), "E_CLOCK_ROLLBACK", 1)
    crl = issue_crl(keys["crl"], 3, revoke=[("acme-vision", None)],
                    issued_at=ISSUED + dt.timedelta(days=1))
    state("remembered-revocation", "a state remembering CRL sequence 3 that revokes the "
          "control license: verify without --crl is E_REVOKED (the revocation is not "
          "forgotten)", _json(state_doc(crl=crl.decode("ascii"), crl_seq=3)), "E_REVOKED", 1)

    # ---- state paths oemkit cannot use: coded errors before any verdict
    c.add("review-state-path-is-directory.txt", "cli", "the state path is a directory: "
          "E_STATE_UNUSABLE before any verdict (was: the verdict printed, then "
          "IsADirectoryError from the write)", b"the state path is a directory\n",
          "E_STATE_UNUSABLE", 4, command=VERIFY, setup={"dirs": ["state.json"]})
    c.add("review-state-parent-is-file.txt", "cli", "the state path's parent is a file: "
          "E_WRITE naming the folder before any verdict (was FileExistsError)",
          b"the state path's parent is a file\n", "E_WRITE", 4,
          command=[*VERIFY[:-3], "--state", "{work}/parent/state.json", "--json"],
          setup={"files": {"parent": "not a folder\n"}})
