"""Adapters that run the cxguard policy engine inside other frameworks (optional extras).

Each module imports its framework at the top, so import only the one you use:
``cxguard.integrations.pipecat`` needs ``pip install cxguard[pipecat]``.
"""
