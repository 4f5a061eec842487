"""Fuzz the license state file: ``oemkit.host.license_state.load_state`` / ``save_state`` and
the whole read-judge-write cycle of ``oemkit.license.verify()`` with a state path. The
state file lives on the host, where a crash, a full disk or a person can damage it: any
content (and a path that is not a plain file) must give a state, the documented set-aside
with a warning, or an OemkitError; never another exception. After a verdict the file
must read back clean (an ``AssertionError`` here is a finding too).

Modes (first byte of the input, modulo 5):

0. the bytes are the state file: ``load_state``, then ``save_state`` of what was read with
   one more CRL sequence number, then ``load_state`` again (must be clean and equal);
1. the bytes are the state file, then ``oemkit.license.verify()`` of the control license
   (a verdict must leave a clean state file);
2. the same with the control CRL given (``crl=``), so a CRL is recorded in the file;
3. the next byte picks a field of a valid v2 state file (``type``, ``last_seen``,
   ``issuers``, ``root_keys``, ``crl``, ``crl_seq``, ``seqs``, a v1 file's ``crl_seq``)
   and the rest is its raw JSON value; then the verify cycle;
4. the next byte picks the layout of the state path (a plain file; a directory; a path
   whose parent is a file; a symlink to the file; a file with no read permission) and the
   rest is the file's content; then the verify cycle.

The trust root is the corpus root; the time is fixed (2030-01-01) and so are the host
facts, so every verdict is deterministic.

Run: ``python fuzz/run.py state SECONDS`` (or ``nox -s fuzz -- SECONDS``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import main, pick

MODES = 5
_S: dict[str, Any] = {}
MARK = b'"__FUZZ__"'
#: Valid state documents with one value replaced by MARK (mode 3).
TEMPLATES: list[str] = [
    '{"type": "__FUZZ__", "last_seen": null, "issuers": []}',
    '{"type": "oemkit-license-state/v2", "last_seen": "__FUZZ__", "issuers": []}',
    '{"type": "oemkit-license-state/v2", "last_seen": "2029-12-31T00:00:00Z", '
    '"issuers": "__FUZZ__"}',
    '{"type": "oemkit-license-state/v2", "last_seen": null, "issuers": [{"root_keys": '
    '"__FUZZ__", "crl": null, "crl_seq": 0, "seqs": {}}]}',
    '{"type": "oemkit-license-state/v2", "last_seen": null, "issuers": [{"root_keys": [], '
    '"crl": "__FUZZ__", "crl_seq": 0, "seqs": {}}]}',
    '{"type": "oemkit-license-state/v2", "last_seen": null, "issuers": [{"root_keys": [], '
    '"crl": null, "crl_seq": "__FUZZ__", "seqs": {}}]}',
    '{"type": "oemkit-license-state/v2", "last_seen": null, "issuers": [{"root_keys": [], '
    '"crl": null, "crl_seq": 0, "seqs": "__FUZZ__"}]}',
    '{"type": "oemkit-license-state/v1", "last_seen": null, "crl": null, '
    '"crl_seq": "__FUZZ__", "seqs": {}}',
]


def setup() -> None:
    if _S:
        return
    import atexit
    import datetime as dt
    import shutil
    import tempfile

    from _common import CORPUS

    import oemkit.license
    from hostile import make_corpus
    from oemkit.host import license_state as runner
    from oemkit.verify import license  # noqa: F401  (instrumented with the rest)
    from oemkit.verify.trust import parse_root

    folder = Path(tempfile.mkdtemp(prefix="oemkit-fuzz-state-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _S.update(
        api=oemkit.license, runner=runner, folder=folder,
        root=parse_root((CORPUS / make_corpus.TRUST).read_bytes()).root,
        license=(CORPUS / "control-license-valid.lic").read_bytes(),
        crl=(CORPUS / "control-crl-valid.crl").read_bytes(),
        now=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
        host={"machine-id": ["0123456789abcdef"], "mac": ["00:11:22:33:44:55"]},
    )
    _cycle(_fresh(), b"", crl=True)  # the harness itself works (raises if not)


def _fresh() -> Path:
    import os
    import shutil
    import stat

    folder: Path = _S["folder"] / "s"
    if folder.exists():
        for path in folder.rglob("*"):  # undo mode 4's permission changes first
            if not path.is_symlink():
                os.chmod(path, stat.S_IRWXU)
        shutil.rmtree(folder)
    folder.mkdir()
    return folder / "state.json"


def _layout(path: Path, layout: int, data: bytes) -> Path:
    """Put ``data`` at ``path`` in one of five layouts; the path the reader is given."""
    import os

    if layout == 1:  # the state path is a directory
        path.mkdir()
        (path / "state.json").write_bytes(data)
    elif layout == 2:  # its parent is a file
        path.parent.joinpath("parent").write_bytes(data)
        return path.parent / "parent" / "state.json"
    elif layout == 3:  # a symlink to the real file
        path.with_name("real.json").write_bytes(data)
        os.symlink("real.json", path)
    else:
        path.write_bytes(data)
        if layout == 4:  # unreadable (root reads it anyway; then it is a plain file)
            os.chmod(path, 0)
    return path


def _cycle(path: Path, data: bytes | None, *, crl: bool = False) -> Any:
    """``oemkit.license.verify()`` with ``path`` as its state; check the file after."""
    if data is not None:
        path.write_bytes(data)
    verdict = _S["api"].verify(_S["license"], _S["root"], crl=[_S["crl"]] if crl else (),
                               state=path, now=_S["now"], host=_S["host"])
    again, problem = _S["runner"].load_state(path, _S["root"])
    assert problem is None, f"the state written after a verdict does not read back: {problem}"
    assert again.last_seen is not None and again.last_seen >= _S["now"], again
    if crl:
        assert again.crl_seq >= 1 and again.crl is not None, again
    return verdict


def run(data: bytes) -> Any:
    setup()
    mode, rest = pick(data, MODES)
    path = _fresh()
    if mode == 0:
        runner = _S["runner"]
        path.write_bytes(rest)
        state, _ = runner.load_state(path, _S["root"])
        runner.save_state(path, type(state)(last_seen=state.last_seen, crl=state.crl,
                                            crl_seq=state.crl_seq + 1, seqs=state.seqs),
                          _S["root"])
        again, problem = runner.load_state(path, _S["root"])
        assert problem is None, f"a state save_state wrote does not read back: {problem}"
        assert (again.crl_seq, again.last_seen, again.seqs) == (
            state.crl_seq + 1, state.last_seen, state.seqs), (state, again)
        return again
    if mode in (1, 2):
        return _cycle(path, rest, crl=mode == 2)
    choice, value = pick(rest, 256)
    if mode == 3:
        template = TEMPLATES[choice % len(TEMPLATES)].encode()
        return _cycle(path, template.replace(MARK, value))
    return _cycle(_layout(path, choice % 5, value), None)


def check(data: bytes) -> None:
    """Replay one input (tests): an OemkitError is fine, anything else raises."""
    from _common import guarded

    guarded(run)(data)


def seeds() -> list[bytes]:
    import json

    setup()
    path = _fresh()
    _cycle(path, None, crl=True)
    written = path.read_bytes()  # a real v2 state file, with a CRL recorded
    v1 = json.dumps({"type": "oemkit-license-state/v1", "last_seen": "2029-06-01T00:00:00Z",
                     "crl": None, "crl_seq": 3, "seqs": {"LIC-1": 2}}).encode()
    out = [bytes([m]) + d for m in (0, 1, 2) for d in (written, v1, b"", b"{}", b"null")]
    out += [bytes([3, i]) + v for i, v in enumerate(
        [b'"oemkit-license-state/v2"', b'"2029-12-31T00:00:00Z"', b"[]", b'["abc"]', b"null",
         b"7", b'{"LIC-1": 2}', b"2"])]
    out += [bytes([4, layout]) + written for layout in range(5)]
    out += [bytes([3, 5]) + b"1e400",  # a counter beyond any integer, deep nesting
            bytes([1]) + b'{"type": "oemkit-license-state/v2", "issuers": ' + b"[" * 1500
            + b"]" * 1500 + b"}"]
    return out


if __name__ == "__main__":
    main("state", setup, run)
