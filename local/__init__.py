"""Local runtime: the Bedrock emulator, moto wiring and in-process Lambda dispatch (imported by cli/ and tests/)."""
