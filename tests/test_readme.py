"""The README's walkthrough runs as written (issue 21 item 1).

Every ```sh block of README.md is run, in order, by one bash (``set -euo pipefail``) in an
empty temporary folder, with oemkit installed from a freshly built wheel (not the
editable checkout) into a new venv, HOME pointed at the folder and no OEMKIT_* variable
inherited. Then the README's start-up license check (its first ```python block) runs with
that venv's Python. A README step that fails, or that needs the repository checkout,
fails this test.

The venv reaches oemkit's dependencies through a path entry to this interpreter's
site-packages (no network: the suite runs offline); a plain path entry does not process
the ``.pth`` files there, so the checkout's editable oemkit stays out of it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from helpers import REPO

README = REPO / "README.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", README.read_text(encoding="utf-8"),
                      re.S | re.M)


def _wheel_venv(tmp: Path) -> Path:
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(wheels), str(REPO)], check=True,
                   capture_output=True)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site.stdout.strip(), "outer-site.pth").write_text("\n".join(sorted(ours)) + "\n")
    wheel = next(wheels.glob("oemkit-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    return venv


def test_the_readme_walkthrough_runs_top_to_bottom(tmp_path):
    shell = blocks("sh")
    assert len(shell) >= 3, "the README lost its walkthrough"
    venv = _wheel_venv(tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OEMKIT_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(HOME=str(tmp_path / "home"), VIRTUAL_ENV=str(venv),
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    where = subprocess.run(["python", "-c", "import oemkit; print(oemkit.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where  # the wheel, not the checkout
    script = "set -euo pipefail\n" + "\n".join(shell)
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "VERIFIED my-model 0.1.0" in log
    assert "VALID license acme-my-model (re-issue 2)" in log
    assert "OK upgrade: current -> example-0.2.0" in log
    assert "OK rollback: current -> example-0.1.0" in log
    # the start-up check, as the README writes it, in the same folder and environment
    startup = blocks("python")[0]
    assert "oemkit.license.verify(" in startup
    env["OEMKIT_STATE"] = str(work / "license-state.json")  # the walkthrough's export
    check = subprocess.run(["python", "-c", startup + "\nprint(verdict.status)"], cwd=work,
                           env=env, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "valid", check.stderr[-2000:]
