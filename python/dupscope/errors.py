"""Every error dupscope raises on purpose, under one base class.

The command line catches :class:`DupscopeError` and prints its message as one line; anything
else is a bug and keeps its traceback. Each class also derives from the built-in exception a
caller would expect (``ValueError`` for bad input, ``OSError`` for files), so code written
against those keeps working.
"""

from __future__ import annotations

import pickle


class DupscopeError(Exception):
    """Base of the errors dupscope reports as one line (the message says what to do)."""


class AnnotationError(DupscopeError, ValueError):
    """The annotation file cannot be used; the message names the file and what is wrong."""


class ModelError(DupscopeError, ValueError):
    """The model cannot be used: unknown name, unreadable file, or an input/output dupscope cannot feed."""


class PipelineError(DupscopeError, RuntimeError):
    """A hard error of the whole run (as opposed to single images failing)."""


class OutputError(PipelineError):
    """The output cannot be written where asked (checked before any work is done)."""


class OutputBusyError(OutputError):
    """Another run holds the output's lock (``<output>.lock``)."""


class DeviceError(DupscopeError, ValueError, RuntimeError):
    """A ``--device`` value that is not understood, or a GPU that cannot be used."""


class SimilarityFileError(DupscopeError, OSError):
    """A similarity file that cannot be read: not HDF5, truncated, or missing what dupscope writes."""


class IncompleteFileError(SimilarityFileError):
    """The file is missing its completion mark: it was not finished (killed or failed run)."""


class EvaluationError(DupscopeError, ValueError):
    """The ground truth or the similarity file cannot be evaluated (the message says why)."""


class ExportError(DupscopeError, ValueError):
    """The export cannot be made (bad threshold, unreadable file)."""


class PredictionsError(DupscopeError, ValueError):
    """A predictions file that cannot be matched to the images (wrong length, wrong shape...)."""


class UnsafePickleError(PredictionsError, pickle.UnpicklingError):
    """A pickle asked for a global outside the allowed set, or for more than it may build."""


class VerificationUnavailable(DupscopeError, RuntimeError):
    """OpenCV (``opencv-python-headless``) is not installed."""


class VisualizeError(DupscopeError, ValueError):
    """The HTML tool cannot be written where asked."""


class AppendError(PipelineError):
    """Images cannot be added to this similarity file (another model or schema, a repeated path)."""


class RayUnavailable(DupscopeError, RuntimeError):
    """``--backend ray`` was asked for and Ray is not installed or its cluster cannot be reached."""
