"""The NON-editable wheel holds the whole package.

An editable install and the suite read ``src/`` directly, so a package the wheel loses (a
``.gitignore`` line such as the stock Python ``build/``, which once dropped the whole
``oemkit.build`` package from the wheel) stays invisible to them. Here the wheel is built
offline by hatchling, from a copy of the files git tracks (or would: untracked files it
does not ignore), and its file list is compared with ``git ls-files``: every module,
package, schema and profile under ``src/oemkit``, and the example bundle and keys the demo
carries in ``oemkit/_examples``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What the wheel is built from (pyproject.toml names the README; .gitignore is read by
#: hatchling) and the force-included examples.
BUILD_INPUTS = ("pyproject.toml", "README.md", ".gitignore", "src/oemkit", "bundles/example",
                "bundles/example-v1", "keys-example")
EXAMPLES = {"bundles/example/": "oemkit/_examples/bundles/example/",
            "bundles/example-v1/": "oemkit/_examples/bundles/example-v1/",
            "keys-example/": "oemkit/_examples/keys-example/"}


def _tracked(*paths: str) -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        # An sdist or a copied tree has no git index to say what the wheel must hold; CI
        # and every developer run from a clone, where this test always runs.
        pytest.skip("needs the git checkout (git ls-files)")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                          "--", *paths], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return sorted(p for p in out.split("\0") if p and (REPO / p).is_file())


def _expected() -> set[str]:
    names = set()
    for path in _tracked(*BUILD_INPUTS[3:]):
        if path.startswith("src/"):
            names.add(path.removeprefix("src/"))
        for source, target in EXAMPLES.items():
            if path.startswith(source):
                names.add(target + path.removeprefix(source))
    return names


def _wheel_files(tmp_path: Path, extra_ignore: str = "") -> set[str]:
    """Build the wheel (no network, no pip: hatchling's own CLI) from a copy of the
    tracked build inputs; ``extra_ignore`` is appended to the copy's .gitignore."""
    tree = tmp_path / "tree"
    for path in _tracked(*BUILD_INPUTS):
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, tree / path)
    if extra_ignore:
        with open(tree / ".gitignore", "a", encoding="utf-8") as ignore:
            ignore.write(f"\n{extra_ignore}\n")
    dist = tmp_path / "dist"
    result = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d",
                             str(dist)], cwd=tree, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = dist.glob("oemkit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist()
                if n.startswith("oemkit/") and not n.endswith("/")}


def test_wheel_holds_every_tracked_package_module_and_data_file(tmp_path):
    expected = _expected()
    packages = {Path(p).parent.as_posix() for p in expected
                if p.endswith("/__init__.py") and not p.startswith("oemkit/_examples/")}
    # The layout of issue 14: a wheel missing a whole package fails here by name.
    assert {"oemkit/release", "oemkit/host", "oemkit/measure", "oemkit/verify",
            "oemkit/cli", "oemkit/models", "oemkit/crypto", "oemkit/report"} <= packages
    assert any(p.startswith("oemkit/schemas/") for p in expected)
    assert any(p.startswith("oemkit/profiles/") for p in expected)
    assert any(p.startswith("oemkit/_examples/keys-example/") for p in expected)
    files = _wheel_files(tmp_path)
    assert sorted(expected - files) == []
    assert sorted(files - expected) == []


@pytest.mark.parametrize("ignore", ["build/", "dist/"])
def test_the_stock_python_gitignore_lines_drop_nothing(tmp_path, ignore):
    """The stock Python .gitignore's ``build/`` and ``dist/`` lines (the build-output
    folders) match no package of the tree."""
    assert sorted(_expected() - _wheel_files(tmp_path, ignore)) == []


def test_a_dropped_package_is_caught(tmp_path):
    """The comparison is not vacuous: a package a .gitignore line drops is reported."""
    missing = _expected() - _wheel_files(tmp_path, "measure/")
    assert "oemkit/measure/__init__.py" in missing
    assert "oemkit/measure/_smoke_child.py" in missing
