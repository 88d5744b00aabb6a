#!/usr/bin/env python3
"""CDK entry point: App -> AppConfig (cdk.json context, -c) -> BatchInferenceStack + GatewayStack -> cdk-nag.

No AWS calls. The gateway stack reads the bot file named by ``gatewayBotsFile`` (default lambdas/gateway/bots.json).

BATCH_SKIP_BUNDLING=1 skips Lambda bundling (no pip, no Docker) for a fast offline synth; never deploy such a synth.
"""

import os

from stacks.synth import build_app

app, _ = build_app(skip_bundling=os.environ.get("BATCH_SKIP_BUNDLING") == "1", gateway=True)
app.synth()
