"""The upload-facing dependencies are pinned past their known advisories, and what is installed
meets the pins.

ADVISORIES is the list checked by hand against the advisory records (OSV / GitHub advisories)
when the pins were last raised; each entry must be named in pyproject.toml's comment, its fixed
version must be at or below the pinned minimum, and the installed version at or above it.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from rel_server import ROOT

PYPROJECT = ROOT / "pyproject.toml"
ADVISORIES = {
    "pillow": [("CVE-2023-50447", "10.2"), ("CVE-2024-28219", "10.3"), ("CVE-2025-48379", "11.3")],
    "python-multipart": [("CVE-2024-24762", "0.0.7"), ("CVE-2024-53981", "0.0.18"), ("CVE-2026-24486", "0.0.22"),
                         ("CVE-2026-40347", "0.0.26"), ("CVE-2026-42561", "0.0.27"), ("CVE-2026-53537", "0.0.30"),
                         ("CVE-2026-53540", "0.0.31"), ("GHSA-v9pg-7xvm-68hf", "0.0.31")],
    "starlette": [("CVE-2024-47874", "0.40"), ("CVE-2025-54121", "0.47.2"), ("CVE-2025-62727", "0.49.1")],
}


def pinned_minimums() -> dict[str, Version]:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    minimums = {}
    for line in dependencies:
        requirement = Requirement(line)
        for spec in requirement.specifier:
            if spec.operator in (">=", "=="):
                minimums[requirement.name.lower()] = Version(spec.version)
    return minimums


@pytest.mark.parametrize("package", sorted(ADVISORIES))
def test_pins_are_past_every_listed_advisory(package):
    minimum = pinned_minimums().get(package)
    assert minimum is not None, f"{package} has no minimum version in pyproject.toml"
    comment = PYPROJECT.read_text()
    for advisory, fixed in ADVISORIES[package]:
        assert advisory in comment, f"{advisory} is not named in pyproject.toml's comment"
        assert Version(fixed) <= minimum, f"{package}>={minimum} admits {advisory} (fixed in {fixed})"


@pytest.mark.parametrize("package", sorted(ADVISORIES))
def test_installed_versions_meet_the_pins(package):
    installed, minimum = Version(version(package)), pinned_minimums()[package]
    assert installed >= minimum, f"{package} {installed} is installed, below the pinned minimum {minimum}"


def test_comment_states_the_same_minimums_as_the_dependency_list():
    comment = PYPROJECT.read_text()
    stated = dict(re.findall(r"#\s+(Pillow|python-multipart|starlette) >= ([\d.]+)", comment))
    assert {k.lower(): Version(v) for k, v in stated.items()} == {
        package: pinned_minimums()[package] for package in ADVISORIES}
