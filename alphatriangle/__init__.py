"""AlphaTriangle: AlphaZero-style self-play training for the trianglengin puzzle."""

import os

# trianglengin imports pygame, which prints a banner on import; keep CLI output clean.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

__all__: list[str] = []
