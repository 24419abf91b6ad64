"""Speech to text: the only room that imports faster-whisper / CTranslate2.

    from cxguard.asr import AsrOptions, Transcriber, AsrRejected

    asr = Transcriber(AsrOptions(model="tiny.en"))    # loads once; share it between calls
    asr.transcribe(turn.pcm16, turn.sample_rate)      # -> Transcript, or raises AsrError
    asr.transcribe_batch([pcm_a, pcm_b])              # -> [Transcript | AsrRejected, ...]

Empty text means nothing was said (silence, or the model's no-speech rule). Text that fails a
guard (runaway decode, repetition loop, compression ratio, low log-probability) raises
:class:`AsrRejected` — an :class:`~cxguard.errors.AsrError` — so the turn's verdicts become
``undetermined``.
"""

from cxguard.asr.decoding import Decode, Window
from cxguard.asr.guards import AsrRejected, RejectReason
from cxguard.asr.models import model_digest, resolve_model_path
from cxguard.asr.options import AsrOptions
from cxguard.asr.transcriber import Transcriber

__all__ = [
    "AsrOptions",
    "AsrRejected",
    "Decode",
    "RejectReason",
    "Transcriber",
    "Window",
    "model_digest",
    "resolve_model_path",
]
