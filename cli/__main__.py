"""``python -m cli batch | emulator``: the user commands (see README)."""

from __future__ import annotations

import argparse
import os
import sys

from cli import batch, emulator
from cli import gateway as gateway_cli


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # synth runs on Node 20 here
    parser = argparse.ArgumentParser(prog="python -m cli", description="Bedrock batch inference and gateway tools")
    commands = parser.add_subparsers(dest="command", required=True)
    batch.add_parser(commands)
    emulator.add_parser(commands)
    gateway_cli.add_parser(commands)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
