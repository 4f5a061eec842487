"""docs/TRUST.md's ceremony across machines runs as written: its ```sh block after "Version
1 across two machines", with key files for both holders (the block's token line for B
uses B's key file instead: tests/test_pkcs11.py signs in real tokens), in an empty folder
holding only the holders' keys and the bundle key's public half."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import REPO
from oemkit.crypto.keys import generate, private_pem, public_pem

TRUST_MD = REPO / "docs" / "TRUST.md"


def _block() -> str:
    text = TRUST_MD.read_text(encoding="utf-8")
    found = re.search(r"Version 1 across two machines.*?^```sh\n(.*?)^```", text, re.S | re.M)
    assert found, "TRUST.md lost its ceremony across machines"
    return found.group(1)


def test_the_ceremony_across_machines_runs_as_written(tmp_path):
    script = _block()
    token_line = "--key 'pkcs11:token=release-b;object=root-b' --pin-file b.pin"
    assert token_line in script
    script = script.replace(token_line, "--key root-b.key")
    for name in ("root-a", "root-b", "bundle"):
        private = generate("ed25519")
        (tmp_path / f"{name}.key").write_bytes(private_pem(private, None))
        (tmp_path / f"{name}.pub").write_text(public_pem(private.public_key()))
    bindir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("OEMKIT_")}
    env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path),
               OEMKIT_STATE=str(tmp_path / "state"))
    wrapped = "set -uo pipefail\noemkit() { " + sys.executable + " -m oemkit \"$@\"; }\n" + \
        script
    run = subprocess.run(["bash", "-c", wrapped], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    # the status step says who is missing (exit 1) and the block goes on, as it documents
    assert "has 1 of the 2 signature(s) it needs from v1's root keys" in run.stderr
    assert "Complete: trust-root-v2.proposal.json is trust root v2 as it is" in run.stderr
    shown = subprocess.run([sys.executable, "-m", "oemkit", "trust", "show", "trust-root.json",
                            "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    root = json.loads(shown.stdout)["trust_root"]
    assert root["version"] == 2 and root["thresholds"]["root"] == 2
    assert sorted(k["name"] for k in root["keys"]) == ["bundle", "root-a", "root-b"]
