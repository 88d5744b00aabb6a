"""The CDK synth of the local runtime, in a child process that exits when the template is written.

The CDK's jsii kernel is a node process that lives as long as the Python process that first used it (about 550 MB
for our app), so synthesizing in the local runtime's own process would keep it for the whole run. Here a child
Python runs ``stacks.synth.synth_batch_template`` and writes the template as JSON to a file; when it exits, its node
process goes with it. ``python -m local.synth_process CONTEXT_JSON TEMPLATE_PATH`` is that child.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def synth_in_child(context: dict[str, Any]) -> dict[str, Any]:
    """The batch stack's template, synthesized (bundling skipped) in a child process with ``context`` overrides."""
    with tempfile.TemporaryDirectory(prefix="local-synth-") as scratch:
        path = Path(scratch) / "template.json"
        done = subprocess.run(
            [sys.executable, "-m", "local.synth_process", json.dumps(context), str(path)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the CDK synth of the local runtime failed (exit {done.returncode}):\n{done.stderr}")
        template: dict[str, Any] = json.loads(path.read_text())
    return template


def main(argv: list[str]) -> int:
    from stacks.synth import synth_batch_template

    context, path = argv
    Path(path).write_text(json.dumps(synth_batch_template(json.loads(context)).template))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
