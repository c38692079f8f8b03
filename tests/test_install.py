"""The install's build environment, checked without compiling mmcv (issue 11).

A cached mmcv wheel once hid a broken cold install: pip moved setuptools past 80 (no
pkg_resources) while installing torch, and mmcv's sdist build failed, but only on machines
without the cached wheel. These tests exercise the path the cache skips:
- `test_build_env_from_nothing` runs `scripts/install.sh --build-env-only` into a new venv
  (the same venv creation, constraints and torch install as the real install) and then mmcv's
  metadata step, which runs its setup.py (pkg_resources, torch's extension builder). ~1.5 min:
  torch's wheels are copied into the venv.
- `test_check_names_missing_pkg_resources` shows the pre-build check stops with one line
  when setuptools has lost pkg_resources.
Both need pip to reach the package index (as the install does).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install.sh"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    # the venv this suite runs in must not leak into the new one
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(sys.prefix))
    return env


def test_every_pip_call_sees_the_constraints() -> None:
    text = INSTALL.read_text()
    export = text.index('export PIP_CONSTRAINT="$ROOT/scripts/constraints.txt"')
    first_pip = min(m.start() for m in re.finditer(r"-m pip |pip_ install", text))
    assert export < first_pip, "PIP_CONSTRAINT must be exported before the first pip call"
    constraints = (ROOT / "scripts" / "constraints.txt").read_text()
    assert re.search(r"^setuptools>=77\.0\.3,<80\b", constraints, re.M), constraints
    assert re.search(r"^torch==", constraints, re.M)


def test_check_names_missing_pkg_resources(tmp_path: Path) -> None:
    env_dir = tmp_path / "broken"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = _clean_env()
    env["PIP_CONSTRAINT"] = "/dev/null"   # no cap: the newest setuptools, as the bug had it
    subprocess.run([str(py), "-m", "pip", "install", "-q", "setuptools>=80"], env=env,
                   check=True, capture_output=True)
    res = subprocess.run([str(py), str(ROOT / "scripts" / "check_build_env.py")], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "has no pkg_resources" in lines[0] and "constraints.txt" in lines[0]


def test_build_env_from_nothing(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    env = _clean_env()
    env["VENV"] = str(env_dir)
    res = subprocess.run(["bash", str(INSTALL), "--build-env-only"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "build environment ok" in res.stdout
    probe = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c",
         "import setuptools, pkg_resources, torch; print(setuptools.__version__)"],
        capture_output=True, text=True, env=env)
    assert probe.returncode == 0, probe.stderr
    major = int(probe.stdout.strip().split(".")[0])
    assert 77 <= major < 80, probe.stdout
