"""cxguard: evaluate every turn of a live AI voice-agent call against behavioural policies."""

__version__ = "0.1.0"
