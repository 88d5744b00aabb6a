"""The README stays a one-screen entry point into the docs site, and every link in it leads somewhere."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def test_the_readme_is_short() -> None:
    # GIVEN the README WHEN its size is measured THEN it stays under 10 KB (the details live in docs/)
    assert len((ROOT / "README.md").read_bytes()) < 10 * 1024


def test_every_relative_link_of_the_readme_leads_to_a_file() -> None:
    # GIVEN the README's links to files of the repository (the docs site checks its own links when it builds)
    targets = [m.group(1) for m in LINK.finditer((ROOT / "README.md").read_text()) if "://" not in m.group(1)]
    # WHEN each is resolved THEN the file exists
    assert targets, "the README links into docs/"
    assert [t for t in targets if not (ROOT / t).exists()] == []


def test_no_tracked_file_cites_a_path_outside_the_repository() -> None:
    # GIVEN every tracked file WHEN searched for a relative path that climbs out of the repository to shared notes
    found = subprocess.run(
        ["git", "grep", "-n", "-I", "-e", "\\.\\./shared", "--", "."], cwd=ROOT, capture_output=True, text=True
    )
    # THEN nothing matches (git grep exits 1 when it finds nothing); what users need is in the project's own docs
    assert found.returncode == 1, found.stdout
