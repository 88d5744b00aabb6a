#!/usr/bin/env python3
"""CDK entry point: App -> AppConfig (cdk.json context, -c) -> BatchInferenceStack -> cdk-nag. No AWS calls.

BATCH_SKIP_BUNDLING=1 skips Lambda bundling (no pip, no Docker) for a fast offline synth; never deploy such a synth.
"""

import os

from stacks.synth import build_app

app, _ = build_app(skip_bundling=os.environ.get("BATCH_SKIP_BUNDLING") == "1")
app.synth()
