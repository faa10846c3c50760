"""One version, one lock, one image recipe: the release files agree with pyproject.toml."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from injector.operations.cli import main

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def lock() -> dict[str, tuple[str, int]]:
    """requirements.txt as {name: (version, number of hashes)}."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match[1])
            pins[name] = (match[2], 0)
        elif line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def image_requirements() -> list[Requirement]:
    """What the image installs: core and [injector] dependencies, and the build backend."""
    project = PYPROJECT["project"]
    texts = [
        *project["dependencies"],
        *project["optional-dependencies"]["injector"],
        *PYPROJECT["build-system"]["requires"],
    ]
    return [Requirement(text) for text in texts]


def test_the_version_is_semver_zero_major() -> None:
    assert re.fullmatch(r"0\.\d+\.\d+", VERSION), VERSION


def test_version_flag_prints_pyprojects_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"sakura-secrets-injector {VERSION}\n"


def test_dockerfile_labels_the_image_with_pyprojects_version_and_license() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', dockerfile))
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]


def test_license_file_is_the_license_pyproject_names() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_changelog_has_a_section_for_this_version() -> None:
    assert re.search(rf"^## \[{re.escape(VERSION)}\]", (REPO / "CHANGELOG.md").read_text(), re.M)


def test_lock_pins_every_runtime_dependency_and_the_build_backend_with_hashes() -> None:
    pins = lock()
    missing = [str(r) for r in image_requirements() if canonicalize_name(r.name) not in pins]
    assert not missing, f"not in requirements.txt (run scripts/lock): {missing}"
    unfit = [
        f"{r} (locked {pins[canonicalize_name(r.name)][0]})"
        for r in image_requirements()
        if not r.specifier.contains(pins[canonicalize_name(r.name)][0], prereleases=True)
    ]
    assert not unfit, f"requirements.txt pins outside pyproject's ranges: {unfit}"
    unhashed = [name for name, (_, hashes) in pins.items() if hashes == 0]
    assert not unhashed, f"pinned without a hash: {unhashed}"


def test_lock_lists_one_hash_per_file_of_a_compiled_release() -> None:
    # a compiled package has a wheel per platform: a lock made for one platform only would
    # list one or two hashes (wheel, sdist), and the other architecture's build would fail
    pins = lock()
    for compiled in ("cryptography", "pyyaml", "markupsafe", "cffi"):
        assert pins[compiled][1] >= 10, (compiled, pins[compiled])


def test_dockerfile_copies_every_package_the_project_ships() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert f"COPY {package}/ /src/{package}/" in dockerfile, package
        assert f"!{package}/" in ignore, package


def test_the_emulator_and_the_demo_are_not_shipped() -> None:
    """They are for tests, benchmarks and scripts/demo in a checkout: neither the wheel (its
    packages, its commands) nor the image (its COPY lines, its build context) holds them."""
    from setuptools import find_packages

    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = {name.split(".")[0] for name in find_packages(str(REPO), include=include)}
    assert shipped == {"contract", "sakura", "injector", "sidecar"}
    assert (REPO / "emulator" / "demo.py").is_file()  # kept, in the checkout
    commands = PYPROJECT["project"]["scripts"].values()
    assert not [c for c in commands if c.split(".")[0].split(":")[0] == "emulator"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert not re.search(r"^COPY\b.*\bemulator\b", dockerfile, re.M)
    assert "!emulator/" not in (REPO / ".dockerignore").read_text().splitlines()


def test_no_module_uses_the_kubernetes_asyncio_client_the_image_drops() -> None:
    users = [
        str(path.relative_to(REPO))
        for package in ("plan", "sakura", "emulator", "injector", "sidecar")
        for path in (REPO / package).rglob("*.py")
        if re.search(r"kubernetes\.aio|from kubernetes import .*\baio\b", path.read_text())
    ]
    assert not users


def test_manifests_refer_to_the_image_by_this_version() -> None:
    # image references (`image:`, the init image's env value) and kustomize `images:` tags
    tags = []
    for path in sorted((REPO / "manifests").rglob("*.yaml")):
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0]
            tags += re.findall(r"sakura-secrets-injector:([\w.-]+)", code)
            tags += re.findall(r"newTag:\s*[\"']?([\w.-]+)", code)
    assert tags, "no image reference found under manifests/"
    assert set(tags) == {VERSION}, tags
