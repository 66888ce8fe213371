"""The exceptions dsd-zoo raises.

Every error the package raises on purpose derives from :class:`DSDZooError`, so callers can
catch the whole family in one place. Each subclass also derives from the closest builtin
(``ValueError``, ``LookupError``, ``OSError``) so generic handlers keep working.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DSDZooError(Exception):
    """Base class of every error raised on purpose by dsd-zoo."""


class SettingError(DSDZooError, ValueError):
    """An environment variable holds a value dsd-zoo does not understand; the message names it and what it takes."""


class UnknownModelError(DSDZooError, LookupError):
    """A model name that is not in the manifest. The message lists the closest names."""

    def __str__(self) -> str:  # LookupError would otherwise print the repr of the message
        return str(self.args[0]) if self.args else ""


class ManifestError(DSDZooError, ValueError):
    """The weights manifest is malformed; the message names the model and the field."""


class RecordError(DSDZooError, ValueError):
    """A file record (:class:`~dsd_zoo.records.FileRecord`) with a field that cannot be right.

    ``field`` names the field (``"urls[1]"``, ``"revision"``) and ``problem`` says what is wrong,
    so that the manifest can report the model and the JSON field.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


class FormatError(DSDZooError, ValueError):
    """A file in a foreign or weight format is malformed, truncated or hostile."""


class ConversionError(DSDZooError, ValueError):
    """A source file parsed, but does not map onto the target architecture."""


class ExportError(DSDZooError):
    """A model could not be exported to ONNX, or its graph does not compute what PyTorch computes."""


class WeightsError(DSDZooError, ValueError):
    """A weights file does not fit the model: missing, unexpected or wrongly shaped tensors."""


class IntegrityError(DSDZooError):
    """Bytes whose digest or size differs from the one they must have."""


class DownloadError(DSDZooError, OSError):
    """Every source of a file failed; the message lists each source and why."""


class OfflineError(DownloadError):
    """Offline mode is on and the file is not in the cache; the message names the file."""


class UnverifiedSourceError(DSDZooError):
    """A source has no published digest and the user has not opted in to trust it."""


class NotAvailableError(DSDZooError):
    """Pretrained weights for this model have not been published in any source yet."""


class DatasetError(DSDZooError, ValueError):
    """An image folder or label file that cannot give a correct evaluation; the message says why and how to fix it."""


class RecipeError(DSDZooError, ValueError):
    """A training recipe that cannot be read or holds a wrong key or value; the message names it."""


class DSDStateError(DSDZooError, RuntimeError):
    """A DSD method called in the wrong phase, e.g. ``prune()`` on an already sparse model."""


class TrainingError(DSDZooError, ValueError):
    """A training run that cannot go on (e.g. weights that diverged to NaN); the message says what to change."""


class UploadError(DSDZooError, OSError):
    """Publishing a release folder on the Hugging Face Hub failed; the message names the repository."""
