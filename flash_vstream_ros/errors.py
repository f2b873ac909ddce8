"""The exception hierarchy of the core library.

Only the ROS node (and the CLI) turn these into ``success=false``, aborted goals or lifecycle
failures. Every message says what was wrong and, where it helps, what to do about it.
"""


class FlashVStreamError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(FlashVStreamError, ValueError):
    """A configuration value is invalid (the message quotes the field and the bad value)."""


class BadFrameError(FlashVStreamError, ValueError):
    """An input image cannot be used (wrong size, encoding, truncated data, corrupt JPEG)."""


class BadQuestionError(FlashVStreamError, ValueError):
    """A question or its options are invalid (empty, too long, reversed time window...)."""


class NotReadyError(FlashVStreamError, RuntimeError):
    """The engine or model is not loaded yet (or has been cleaned up)."""


class BusyError(FlashVStreamError, RuntimeError):
    """The question queue is full; the caller may retry later."""


class CancelledError(FlashVStreamError):
    """A question was cancelled by its caller before the answer was complete."""


class ModelError(FlashVStreamError, RuntimeError):
    """The model failed (out of memory, bad weights, generation error)."""


class CheckpointError(ModelError):
    """A checkpoint folder is missing files, has wrong shapes or unknown keys."""


class GpuBudgetError(ModelError):
    """The configured model and memory do not fit the configured GPU memory budget."""


class MemoryFileError(FlashVStreamError, OSError):
    """A saved memory file is missing, corrupt, truncated or of an incompatible format."""


class SourceError(FlashVStreamError, OSError):
    """A video file, image folder or bag cannot be opened or read."""
