"""The client side of each media-stream protocol, sans-I/O.

One client per protocol, playing the platform (Twilio, Genesys AudioHook): it builds and
numbers the messages the platform would send and checks what the server answers. The I/O
(websocket, pacing, reading audio files) is :mod:`cxguard.runtime.simulate`'s; ``cxguard
simulate``, the demo, the benchmarks, the fuzzers and the tests all drive these clients.
This room imports only ``model``, ``errors`` and ``protocols``.
"""
