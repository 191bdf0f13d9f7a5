"""The bad-input catalogue as the test run observed it: one row per case, written as a Markdown
table to test-artifacts/bad-input-catalogue.md at the end of the session (see conftest.py).

Rows are recorded *before* the assertions run, so a failing case still shows what the server
actually answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["record", "write_catalogue", "ROWS", "CURRENT"]

SECTIONS = ("Body and multipart", "Image content", "Protocol", "Connection")


@dataclass
class Row:
    section: str
    case: str
    expected: str
    observed: str
    note: str = ""
    passed: bool | None = None  # filled in by the test's outcome


ROWS: list[Row] = []
CURRENT: list[Row] = []  # rows of the running test (conftest marks them with its outcome)


def record(section: str, case: str, expected: str, observed, note: str = "") -> Row:
    """Add (or replace, on a rerun) the row for ``case``; returns it so the test can mark it passed."""
    assert section in SECTIONS, section
    for existing in list(ROWS):
        if existing.section == section and existing.case == case:
            ROWS.remove(existing)
    row = Row(section, case, expected, str(observed), note)
    ROWS.append(row)
    CURRENT.append(row)
    return row


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_catalogue(path: Path) -> None:
    if not ROWS:
        return
    lines = [
        "# Bad-input catalogue (observed)",
        "",
        f"Written by `pytest tests/reliability` on {time.strftime('%Y-%m-%d %H:%M:%S')} against real "
        "`imgcls serve` processes. Every error answer was checked to be JSON `{\"error\": {\"code\", "
        "\"message\"}}` with a plain message (no traceback, path or internal name); after every case the "
        "server still answered /healthz and its open file descriptors and TMPDIR file count were back to baseline.",
        "",
    ]
    for section in SECTIONS:
        rows = [r for r in ROWS if r.section == section]
        if not rows:
            continue
        lines += [f"## {section}", "", "| case | expected | observed | ok | notes |", "|---|---|---|---|---|"]
        for r in rows:
            ok = {True: "yes", False: "**NO**", None: "?"}[r.passed]
            lines.append(f"| {_cell(r.case)} | {_cell(r.expected)} | {_cell(r.observed)} | {ok} | {_cell(r.note)} |")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
