"""``python -m local.emulator ...``: the same as ``python -m cli emulator ...`` (see cli/emulator.py)."""

from __future__ import annotations

import sys

from cli.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["emulator", *sys.argv[1:]]))
