"""The audio room: wire audio to speech segments per speaker, synchronous and numpy-only.

- :mod:`cxguard.audio.codec`: G.711 μ-law ⇄ int16 (lookup tables, bit-exact with audioop);
- :mod:`cxguard.audio.resample`: soxr resampling;
- :mod:`cxguard.audio.vad`: :class:`~cxguard.audio.vad.VadSegmenter`, per-speaker endpointing;
- :mod:`cxguard.audio.files`: reading any audio file (PyAV), writing PCM/μ-law WAV.

Import the submodule you need; this package imports nothing so that loading the codec does not
pull in PyAV.
"""
