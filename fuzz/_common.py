"""Shared plumbing for the atheris fuzz targets in this directory.

Each target module defines ``setup()`` (imports oemkit and builds fixed inputs; called
inside atheris' instrumentation), ``run(data)`` (one input: any OemkitError is the expected
answer to garbage, anything else propagates) and ``seeds()`` (inputs to start from, taken
from tests/hostile/corpus). The first byte of every input picks a *mode*: raw bytes for
the parser, or bytes placed behind a valid signature (re-signed with the example keys on
each run) so that the fuzzer also reaches the parsers that only signed data gets to.
"""

from __future__ import annotations

import hashlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "hostile" / "corpus"
REGRESSIONS = CORPUS / "regressions"
for extra in (REPO / "tests", REPO / "src"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


def corpus_files(*kinds: str) -> list[tuple[str, bytes]]:
    """(file name, bytes) of the corpus cases of these kinds (INDEX.json order)."""
    import json

    index = json.loads((CORPUS / "INDEX.json").read_text())
    return [(c["file"], (CORPUS / c["file"]).read_bytes()) for c in index["cases"]
            if c["kind"] in kinds]


def pick(data: bytes, modes: int) -> tuple[int, bytes]:
    """(mode, rest): the first byte chooses among ``modes`` ways to use the rest."""
    if not data:
        return 0, b""
    return data[0] % modes, data[1:]


#: Crashes already reported and listed in tests/hostile/test_corpus.py PENDING_FIXES:
#: (exception type, file, function). While fuzzing they count as answers, so that the
#: fuzzer looks for new ones instead of stopping on these again and again; replaying a
#: regression (``check``) still treats them as crashes.
KNOWN_BUGS: list[tuple[str, str, str]] = [
    # none pending; e.g. ("TypeError", "manifest.py", "from_dict")
]


def _known(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return any(type(exc).__name__ == kind and Path(f.filename).name == file
               and f.name == function for f in frames for kind, file, function in KNOWN_BUGS)


def guarded(run: Callable[[bytes], Any], *, tolerate_known: bool = False
            ) -> Callable[[bytes], None]:
    """One fuzz input: OemkitError is an answer, anything else a crash (re-raised)."""
    from oemkit.errors import OemkitError

    def one(data: bytes) -> None:
        try:
            run(data)
        except OemkitError:
            pass
        except Exception as exc:
            if not (tolerate_known and _known(exc)):
                raise

    return one


def main(name: str, setup: Callable[[], None], run: Callable[[bytes], Any]) -> None:
    """``python fuzz/fuzz_X.py [libFuzzer flags] CORPUS_DIR [SEED_DIR...]``."""
    import atheris

    with atheris.instrument_imports(include=["oemkit"]):
        setup()
    one = guarded(run, tolerate_known=True)
    atheris.Setup(sys.argv, one)
    print(f"fuzz_{name}: instrumented oemkit, starting", file=sys.stderr, flush=True)
    atheris.Fuzz()


def memory_file(data: bytes) -> Any:
    """A read-only file object over ``data`` that, unlike BytesIO, has a real descriptor
    (a Linux memfd): for readers that need ``fileno()``."""
    fd = os.memfd_create("oemkit-fuzz")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return os.fdopen(fd, "rb")


def write_seeds(folder: Path, seeds: Iterable[bytes]) -> int:
    """Each seed as a file named after its SHA-1 (duplicates collapse)."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for seed in seeds:
        (folder / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        count += 1
    return count


def describe(exc: BaseException) -> str:
    """Where an exception came from: type and innermost oemkit frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}oemkit{os.sep}" in f.filename] or frames
    last = ours[-1] if ours else None
    where = f"{Path(last.filename).name}:{last.lineno} in {last.name}" if last else "?"
    return f"{type(exc).__name__} at {where}: {exc}"
