"""Print ``name==version`` for every distribution a project needs, as installed here.

Run with the project environment's Python (``.venv/bin/python container/pins.py imgcls[export]``):
it walks the installed distributions' requirements (extras and environment markers evaluated)
from the project down and pins each to the version installed. The image is then built from
exactly the versions the host tests ran, and the pins change only when one of *those*
packages changes, not when a test tool is added to the environment.
"""

from __future__ import annotations

import sys
from importlib import metadata

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip vendors packaging; every venv that can build the wheelhouse has pip
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name


def closure(root: str) -> dict[str, str]:
    """Installed versions of everything ``root`` (a requirement string) needs, root excluded."""
    top = Requirement(root)
    queue = [(top.name, set(top.extras))]
    done: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    while queue:
        name, extras = queue.pop()
        key = canonicalize_name(name)
        if key in done and extras <= done[key]:
            continue
        done.setdefault(key, set()).update(extras)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"pins.py: {name} is required but not installed in {sys.prefix}")
        versions[key] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
                queue.append((req.name, set(req.extras)))
    versions.pop(canonicalize_name(top.name), None)
    return versions


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python pins.py 'project[extra,...]'")
    for name, version in sorted(closure(sys.argv[1]).items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
