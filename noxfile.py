"""Sessions: `nox -s tests` (the suite, offline, hostile corpus and property tests included),
`nox -s lint` (ruff, mypy strict, import-linter's layering contract),
`nox -s license_api` (the license API with no extras and only its own two dependencies),
`nox -s fuzz -- SECONDS` (atheris) and `nox -s bench_delta -- ARGS` (benchmarks/delta.py).
Only tests and lint run by default."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    # sigstore-js, an outside verifier for our Sigstore bundles (tests/test_interop.py).
    if shutil.which("npm") and not Path("tests/interop/node_modules/@sigstore").is_dir():
        session.run("npm", "ci", "--silent", "--no-audit", "--no-fund", "--prefix",
                    "tests/interop", external=True)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "src", "tests", "fuzz", "benchmarks", "noxfile.py", "bundles",
                "keys-example", "ansible")
    session.run("mypy")
    session.run("lint-imports")  # the layering of pyproject.toml's [tool.importlinter]


#: What ``oemkit.license.verify`` imports beyond the standard library and oemkit itself
#: (``python -X importtime``): the signature checks and the canonical JSON of the state file.
LICENSE_API_NEEDS = ("cryptography", "rfc8785")

#: Run in the license_api venv, in the checkout's root: the corpus control license verifies
#: against the corpus trust root (with the control CRL and a state file, twice) and an expired
#: one is refused with its code, while nothing else oemkit declares is installed.
LICENSE_API_CHECK = """
import datetime as dt, importlib.util, sys, tempfile
from pathlib import Path
import oemkit, oemkit.license
assert 'site-packages' in oemkit.__file__, f'oemkit imported from {oemkit.__file__}'
skipped = ('onnx', 'onnxruntime', 'numpy', 'typer', 'rich', 'yaml', 'zstandard', 'psutil',
           'securesystemslib', 'cyclonedx', 'packageurl', 'jsonschema_rs', 'packaging',
           'starlette', 'uvicorn', 'httptools', 'uvloop', 'prometheus_client', 'orjson',
           'matplotlib')
present = [m for m in skipped if importlib.util.find_spec(m) is not None]
assert not present, f'installed, but the license API must not need them: {present}'
corpus = Path('tests/hostile/corpus')
lic, trust = corpus / 'control-license-valid.lic', corpus / 'trust-root.json'
with tempfile.TemporaryDirectory() as tmp:
    for _ in range(2):
        verdict = oemkit.license.verify(lic, trust=trust, crl=[corpus / 'control-crl-valid.crl'],
                                        state=Path(tmp) / 'state.json')
        assert verdict.status == 'valid' and verdict.crl_seq == 1, verdict
verdict.require_feature('batch')
try:
    oemkit.license.verify(lic, trust=trust, state=None,
                          now=dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))
except oemkit.license.LicenseError as exc:
    assert exc.code == 'E_EXPIRED', exc
else:
    raise AssertionError('an expired license was accepted')
third = sorted({m.partition('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)
               - {'__main__', 'oemkit', '_cffi_backend', '_openssl', '_distutils_hack'})
print(f'license API OK with no extras: {verdict.claims.license_id} {verdict.status}; '
      f'third-party modules imported: {", ".join(third)}')
"""


@nox.session
def license_api(session: nox.Session) -> None:
    """The license API an OEM runtime calls, installed as such a runtime would: oemkit with
    ``--no-deps`` and only LICENSE_API_NEEDS (no extras, no CLI, no ONNX stack); checked by
    LICENSE_API_CHECK. Not a default session: it builds a wheel (hatchling from the index)."""
    declared = nox.project.load_toml("pyproject.toml")["project"]["dependencies"]
    needs = [d for d in declared if re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]
             in LICENSE_API_NEEDS]
    if len(needs) != len(LICENSE_API_NEEDS):
        session.error(f"pyproject.toml no longer declares all of {LICENSE_API_NEEDS}")
    session.install("--no-deps", ".")
    session.install(*needs)
    check = Path(session.create_tmp()) / "license_api_check.py"  # not run from the checkout
    check.write_text(LICENSE_API_CHECK, encoding="utf-8")
    session.run("python", str(check))


@nox.session
def fuzz(session: nox.Session) -> None:
    """Coverage-guided fuzzing of the bundle reader, the license parser, the spec loader, the
    unverified readers, the media index and the license state file.

    `nox -s fuzz -- 1800` runs each target for 1800 s (default 60), seeded from
    tests/hostile/corpus; extra arguments go to fuzz/run.py (e.g. --save-regressions).
    Findings are kept in fuzz/.work/TARGET/artifacts; the session fails if there are any.
    """
    seconds = session.posargs[0] if session.posargs else "60"
    session.install("-e", ".[test]", "atheris")
    failed = []
    for target in ("bundle", "license", "spec", "readers", "media", "state"):
        try:
            session.run("python", "fuzz/run.py", target, seconds, *session.posargs[1:])
        except nox.command.CommandFailed:
            failed.append(target)
    if failed:
        session.error(f"fuzzing found crashes in {', '.join(failed)}: see "
                      "fuzz/.work/TARGET/artifacts/*.txt")


@nox.session
def bench_delta(session: nox.Session) -> None:
    """Delta updates against zstd --patch-from, bsdiff4 and casync (benchmarks/delta.py);
    `nox -s bench_delta -- --model-size 64MiB` for a quick run. Needs the zstd CLI, and
    casync for its row (apt-get install casync). Not a default session."""
    session.install("-e", ".", "bsdiff4>=1.2")
    session.run("python", "benchmarks/delta.py", *session.posargs)
