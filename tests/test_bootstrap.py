"""scripts/find-uv, as the README's two commands use it on a fresh machine: a uv on PATH is used as it is, and
without one uv is installed privately, also under a distribution's Python that refuses installs (PEP 668)."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SYSTEM_PYTHON = Path("/usr/bin/python3")


def find_uv(home: Path, path: str) -> subprocess.CompletedProcess[str]:
    """Source scripts/find-uv in a clean shell; stdout: what UV is, then what it says its version is."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("UV", "XDG_"))}
    env |= {"HOME": str(home), "PATH": path}  # the rest (certificates, proxies, pip's cache) as the user has it
    script = 'source scripts/find-uv && echo "$UV" && $UV --version'
    return subprocess.run(
        ["/bin/bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def externally_managed(python: Path) -> bool:
    marker = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return (Path(marker.stdout.strip()) / "EXTERNALLY-MANAGED").is_file()


def test_without_uv_it_is_installed_privately_and_the_system_python_is_left_alone(tmp_path: Path) -> None:
    if not SYSTEM_PYTHON.is_file() or not externally_managed(SYSTEM_PYTHON):
        pytest.skip("no distribution Python marked EXTERNALLY-MANAGED (PEP 668) at /usr/bin/python3")
    refused = subprocess.run(
        [str(SYSTEM_PYTHON), "-m", "pip", "install", "--dry-run", "uv"], capture_output=True, text=True, check=False
    )
    if "externally-managed-environment" not in refused.stderr:
        pytest.skip(f"/usr/bin/python3 has no pip that refuses installs: {refused.stderr.strip()[:200]}")

    first = find_uv(tmp_path, "/usr/bin:/bin")
    private = tmp_path / ".local" / "share" / "mcpbot" / "uv"
    assert first.returncode == 0, first.stderr
    assert f"installing it into {private} with pip --target" in first.stderr
    uv, version = first.stdout.splitlines()
    assert uv == f"{private}/bin/uv" and version.startswith("uv ")
    # the system Python has no uv after this
    assert subprocess.run([str(SYSTEM_PYTHON), "-m", "uv", "--version"], capture_output=True).returncode != 0

    again = find_uv(tmp_path, "/usr/bin:/bin")
    assert again.returncode == 0 and again.stderr == "" and again.stdout == first.stdout  # installed once

    on_path = find_uv(tmp_path / "elsewhere", f"{private}/bin:/usr/bin:/bin")
    assert on_path.returncode == 0 and on_path.stderr == ""
    assert on_path.stdout.splitlines()[0] == "uv"  # a uv on PATH comes first


def test_without_uv_or_pip_it_says_how_to_get_uv(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_python = bin_dir / "python3"
    fake_python.write_text("#!/bin/sh\necho 'No module named pip' >&2\nexit 1\n")
    fake_python.chmod(0o755)
    done = find_uv(tmp_path, f"{bin_dir}:/bin")
    assert done.returncode == 1
    assert "could not install uv with python3 -m pip; install uv (https://docs.astral.sh/uv/" in done.stderr
