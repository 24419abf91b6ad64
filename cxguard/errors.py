"""The one error tree of cxguard.

Third-party errors are translated at the boundary of the room that meets them (a Redis
outage becomes :class:`SinkUnavailable`, a broken YAML file :class:`PolicyError`), so callers
catch these and nothing else::

    CxguardError
    ├── ConfigError                 settings, CLI arguments, missing model files
    ├── ProtocolError               a media stream broke its protocol; carries the close code
    │   ├── TwilioProtocolError
    │   └── AudioHookProtocolError
    ├── AuthenticationError         an upgrade request failed signature / API-key checks
    ├── ControlRequestError         a control-API request was refused (carries the HTTP status)
    ├── AudioError                  undecodable or impossible audio
    ├── AsrError                    the speech model failed or could not be loaded
    │   └── AsrOverloaded           the bounded ASR queue is full
    ├── PolicyError                 a policy pack is invalid (message names file:line)
    ├── ClassifierError             an ONNX classifier is missing, corrupt or failed
    ├── SinkError
    │   └── SinkUnavailable         Redis / webhook / Twilio REST unreachable
    └── EvidenceError               the ledger could not be written or read
"""

from __future__ import annotations


class CxguardError(Exception):
    """Base of every error cxguard raises on purpose."""


class ConfigError(CxguardError):
    pass


class ProtocolError(CxguardError):
    """A stream violated its protocol; the stream is closed, other calls carry on.

    ``close_code`` is the WebSocket close code to send (RFC 6455 §7.4.1), one of
    ``cxguard.protocols.base.CloseCode``: 1002 protocol error, 1003 unsupported data, 1007
    invalid payload, 1008 policy violation, 1009 too big, 1011 internal error. Protocol cores
    record it (``MediaStream.error``) rather than raise it.
    """

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


class TwilioProtocolError(ProtocolError):
    pass


class AudioHookProtocolError(ProtocolError):
    """``code`` is the AudioHook error code sent in the ``error``/``disconnect`` message."""

    def __init__(self, message: str, close_code: int = 1008, code: int = 400) -> None:
        super().__init__(message, close_code)
        self.code = code


class AuthenticationError(CxguardError):
    """``status`` is the HTTP status to answer the upgrade with (401 or 403)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class ControlRequestError(CxguardError):
    """``status`` is the HTTP status to answer a control-API request with (400, 404, 405 …)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class AudioError(CxguardError):
    pass


class AsrError(CxguardError):
    readings: tuple[str, ...] = ()
    """What the decodes heard when they were all unsure (``cxguard.asr.agreement.readings``);
    empty for every other failure."""


class AsrOverloaded(AsrError):
    pass


class PolicyError(CxguardError):
    pass


class ClassifierError(CxguardError):
    pass


class SinkError(CxguardError):
    pass


class SinkUnavailable(SinkError):
    pass


class EvidenceError(CxguardError):
    pass
