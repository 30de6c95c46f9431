"""The errors of pyg_docre: one base class, one subclass per kind of bad input.

Every error the project raises for input a user can fix (a config, a data file, a prediction,
a saved model, a run folder, text, a command line) is a :class:`PygDocreError`, itself a
``ValueError``, with a one-line message that names the file, the key or the field. Catch
:class:`PygDocreError` to handle them all; the classes keep their historical homes too
(``pyg_docre.config.ConfigError``, ``pyg_docre.data.docred.DocREDFormatError``, ...).

.. code-block:: text

    PygDocreError (ValueError)
    ├── FormatError                 a file, document, prediction or text is malformed
    │   ├── DocREDFormatError       DocRED-format file or document     (pyg_docre.data)
    │   ├── DocumentFormatError     gold/train document for the scorer (pyg_docre.metrics)
    │   ├── PredictionFormatError   prediction or result file          (pyg_docre.metrics)
    │   └── TextFormatError         plain text or its entity spans     (pyg_docre.text)
    ├── ConfigError                 an experiment config key           (pyg_docre.config)
    ├── CheckpointError             a saved model folder               (pyg_docre.models)
    ├── RunFolderError, ResumeError, PreflightError                    (pyg_docre.training)
    └── CLIError                    a command line                     (pyg_docre.cli)
"""
from __future__ import annotations

from os import PathLike
from typing import Optional

__all__ = ["PygDocreError", "FormatError", "ConfigError", "CheckpointError", "RunFolderError",
           "ResumeError", "PreflightError"]


class PygDocreError(ValueError):
    """Base class of the project's errors about input a user can fix."""


class FormatError(PygDocreError):
    """A file, document, prediction or text is malformed.

    The message is ``PATH: WHERE: FIELD: REASON`` with the parts that are known.

    Attributes:
        reason: what is wrong.
        path: the file (``None`` for data given in memory).
        field: the offending field, as a path such as ``vertexSet[2][0].pos``.
    """

    def __init__(self, reason: str, *, path: str | PathLike | None = None,
                 where: Optional[str] = None, field: Optional[str] = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        self.field = field
        parts = [p for p in (self.path, where, field) if p is not None]
        super().__init__(": ".join(parts + [reason]))


class ConfigError(PygDocreError):
    """A configuration file or override is invalid; the message names the key."""


class CheckpointError(PygDocreError):
    """A saved model folder is missing, incomplete or damaged; the message names the file."""


class RunFolderError(PygDocreError):
    """The output folder cannot be used as asked; the message says why and what to do."""


class ResumeError(PygDocreError):
    """A resume folder is missing, damaged, or does not belong to this run; names the file."""


class PreflightError(PygDocreError):
    """An experiment cannot start; the message names the config key and the file."""
