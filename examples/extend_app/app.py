#!/usr/bin/env python3
"""CDK entry point of the example: ``cd examples/extend_app && npx cdk synth`` (the project's pinned CLI).

BATCH_SKIP_BUNDLING=1 skips Lambda bundling for a fast offline synth; never deploy such a synth.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root: stacks/, lambdas/, prompt_templates

from examples.extend_app.stack import build_app  # noqa: E402

app, _ = build_app(skip_bundling=os.environ.get("BATCH_SKIP_BUNDLING") == "1")
app.synth()
