"""Replay tooling: speak dialogues with TTS into two-track 8 kHz μ-law calls (see render.py)."""
