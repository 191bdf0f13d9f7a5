"""Fault injection for the reliability tests: deliberate leaks that prove the leak detectors work.

A soak test that never fails proves nothing. These hooks let the test suite run the *same*
soak against a server that leaks on purpose and check that the detector fires:

* ``IMGCLS_TEST_LEAK_KB=N``: every request keeps N KB of (touched) memory forever;
* ``IMGCLS_TEST_LEAK_FILES=1``: every request leaves one open, named temporary file behind.

They are honoured only when ``IMGCLS_ENABLE_TEST_HOOKS=1`` is also set, so a stray variable in a
production environment cannot make a real server leak.
"""

from __future__ import annotations

import logging
import os
import tempfile

__all__ = ["leak_hook_settings", "LeakHook"]

log = logging.getLogger("imgcls.server")


def leak_hook_settings(environ=os.environ) -> tuple[int, bool] | None:
    """(KB leaked per request, leak a file per request) when the test hooks are on, else None."""
    if environ.get("IMGCLS_ENABLE_TEST_HOOKS") != "1":
        return None
    try:
        kb = max(0, int(environ.get("IMGCLS_TEST_LEAK_KB", "0") or 0))
    except ValueError:
        kb = 0
    files = environ.get("IMGCLS_TEST_LEAK_FILES") == "1"
    return (kb, files) if kb or files else None


class LeakHook:
    """Pure-ASGI middleware that leaks per request, as configured (see the module docstring)."""

    def __init__(self, app, *, kb: int, files: bool):
        self.app = app
        self.kb = kb
        self.files = files
        self.kept: list = []
        log.warning("TEST HOOK ACTIVE: leaking %d KB%s per request", kb, " and one open file" if files else "")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            if self.kb:
                self.kept.append(b"\x01" * (self.kb * 1024))  # written bytes, so they count in RSS
            if self.files:
                self.kept.append(tempfile.NamedTemporaryFile(prefix="imgcls-leak-", delete=False))  # fd + dir entry
        await self.app(scope, receive, send)
