"""Cost of the audio path per 20 ms frame: VadSegmenter vs raw webrtcvad, plus the codec.

    .venv/bin/python benchmarks/vad_bench.py [--repeat 7]

Prints one JSON object. Audio: both tracks of the bundled demo call (8 kHz, ~91 s each) and the
OSR Harvard-sentence recording in tests/data (35.6 s). Each figure is the best of ``--repeat``
runs (the least disturbed by other processes) and the median beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import webrtcvad

from cxguard.audio.codec import ulaw_decode, ulaw_encode
from cxguard.audio.files import read_audio, read_wav_ulaw
from cxguard.audio.resample import resample
from cxguard.audio.vad import VadOptions, VadSegmenter

ROOT = Path(__file__).resolve().parents[1]
RATE, FRAME = 8000, 160


def _audio() -> npt.NDArray[np.int16]:
    demo = ROOT / "cxguard" / "data" / "demo"
    parts = [ulaw_decode(read_wav_ulaw(demo / f"{s}.wav")[0]) for s in ("agent", "customer")]
    parts.append(read_audio(ROOT / "tests" / "data" / "OSR_us_000_0034_8k.wav", RATE))
    return np.concatenate(parts)


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return min(runs), statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    pcm = _audio()
    frames = len(pcm) // FRAME
    data = pcm[: frames * FRAME].tobytes()
    view = memoryview(data)
    vad = webrtcvad.Vad(2)

    def raw_is_speech() -> None:
        for off in range(0, len(data), 2 * FRAME):
            vad.is_speech(view[off : off + 2 * FRAME], RATE)

    def raw_c() -> None:
        process, handle = webrtcvad._webrtcvad.process, vad._vad
        for off in range(0, len(data), 2 * FRAME):
            process(handle, RATE, view[off : off + 2 * FRAME], FRAME)

    def segmenter(chunk: int, output_rate: int) -> Callable[[], object]:
        pieces = [(pcm[i : i + chunk], i * 1000 / RATE) for i in range(0, len(pcm), chunk)]
        options = VadOptions(output_rate=output_rate)

        def run() -> int:
            seg = VadSegmenter("agent", RATE, options)
            turns = 0
            for piece, start_ms in pieces:
                turns += len(seg.feed(piece, start_ms))
            return turns + len(seg.flush())

        return run

    ulaw = ulaw_encode(pcm)
    payloads = [ulaw[i : i + FRAME] for i in range(0, len(ulaw), FRAME)]

    def decode_chunks() -> None:
        for p in payloads:
            ulaw_decode(p)

    cases: dict[str, Callable[[], object]] = {
        "webrtcvad_is_speech": raw_is_speech,
        "webrtcvad_c_process": raw_c,
        "segmenter_160_samples_16k_out": segmenter(160, 16000),
        "segmenter_160_samples_no_resample": segmenter(160, RATE),
        "segmenter_1s_chunks_16k_out": segmenter(8000, 16000),
        "segmenter_1s_chunks_no_resample": segmenter(8000, RATE),
        "ulaw_decode_160_byte_chunks": decode_chunks,
    }
    result: dict[str, object] = {
        "audio_s": round(len(pcm) / RATE, 1),
        "frames": frames,
        "frame_ms": 20,
        "turns": segmenter(160, 16000)(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "us_per_frame": {},
    }
    per_frame: dict[str, dict[str, float]] = {}
    for name, fn in cases.items():
        best, median = _time(fn, args.repeat)
        per_frame[name] = {
            "best": round(best / frames * 1e6, 2),
            "median": round(median / frames * 1e6, 2),
        }
    result["us_per_frame"] = per_frame
    best, _ = _time(lambda: resample(pcm, RATE, 16000), args.repeat)
    result["resample_8k_to_16k_ms_per_audio_s"] = round(best * 1000 / (len(pcm) / RATE), 3)
    result["segmenter_overhead_vs_c_process"] = round(
        per_frame["segmenter_1s_chunks_no_resample"]["best"]
        / per_frame["webrtcvad_c_process"]["best"],
        2,
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
