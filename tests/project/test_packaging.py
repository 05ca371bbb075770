"""schemas/ and registry_index/ ship inside the wheel and are found the same way as in a checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile

import pytest
from support.manifest_samples import VALID_MANIFEST
from support.paths import REPO

from adapterhub.resources import bundled_index_dir, schemas_dir

ROOT = REPO
LIGHT_DEPS = ["click", "jsonschema", "packaging", "filelock", "platformdirs", "pyyaml", "requests"]


def test_checkout_finds_data_dirs():
    assert (schemas_dir() / "adapter-manifest.v1.json").is_file()
    assert (bundled_index_dir() / "config.json").is_file()


@pytest.mark.slow
def test_wheel_ships_data_and_installed_command_works(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)], check=True)
    (wheel,) = dist.glob("adapterhub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "adapterhub/_data/schemas/adapter-manifest.v1.json" in names
    assert "adapterhub/_data/registry_index/config.json" in names
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", *LIGHT_DEPS], check=True)
    exe = env_dir / "bin" / "adapterhub"
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(VALID_MANIFEST))
    work = tmp_path / "elsewhere"  # run away from the checkout so nothing is found by accident
    work.mkdir()
    out = subprocess.run([exe, "validate", str(manifest)], capture_output=True, text=True, cwd=work)
    assert out.returncode == 0, out.stderr
    where = subprocess.run([py, "-c", "from adapterhub.resources import bundled_index_dir as b; print(b())"],
                           capture_output=True, text=True, cwd=work, check=True).stdout.strip()
    assert "_data/registry_index" in where and str(ROOT) not in where
    out = subprocess.run([exe, "index", "check", where], capture_output=True, text=True, cwd=work)
    assert out.returncode == 0 and out.stdout.startswith("ok:"), out.stdout + out.stderr
