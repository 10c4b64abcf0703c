"""The wheel installs one import name, ``vigil``, and every module of the three folders.

Built from the files the Dockerfile copies, so the image builds from exactly those.
"""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("stream", "detectors", "updaters")
COPIED = ("pyproject.toml", "README.md", *FOLDERS)
"""What the Dockerfile's build stage copies before `pip install .`."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    source = tmp_path_factory.mktemp("source")
    for name in COPIED:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(out), str(source)], check=True, timeout=600)
    (built,) = out.glob("*.whl")
    return zipfile.ZipFile(built)


def test_dockerfile_copies_what_the_wheel_is_built_from() -> None:
    copied = {source.rstrip("/")
              for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and "--from" not in line
              for source in line.split()[1:-1]}
    assert set(COPIED) <= copied


def test_only_vigil_is_a_top_level_name(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {name for name in top if name.endswith(".dist-info")}
    assert top - dist_info == {"vigil"}
    distribution = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert dist_info == {f"{distribution.replace('-', '_')}-{_version()}.dist-info"}


def test_every_module_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    expected = {f"vigil/{path.relative_to(ROOT).as_posix()}"
                for folder in FOLDERS for path in (ROOT / folder).rglob("*.py")}
    assert expected <= set(wheel.namelist())


def test_the_command_is_still_vigil(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "vigil = vigil.stream.cli:main" in text


def _version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])
