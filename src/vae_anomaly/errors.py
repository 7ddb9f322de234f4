"""The package's error types: what a user did wrong, worded so the CLI can print it in one line."""


class VAEAnomalyError(Exception):
    """Base class of every error caused by input (files, arguments, config, saved models)."""


class InputError(VAEAnomalyError, ValueError):
    """A file, array or argument is not what was expected; the message names it and the rule."""


class DatasetNotFoundError(VAEAnomalyError, FileNotFoundError):
    """A dataset is neither on disk nor downloadable; the message says how to get it."""


class ModelFileError(VAEAnomalyError, ValueError):
    """A saved model is of another format version, truncated, or altered."""


class NotFittedError(VAEAnomalyError, AttributeError):
    """A detector was used before ``fit`` (worded like scikit-learn's NotFittedError)."""


class CompileError(VAEAnomalyError, RuntimeError):
    """``torch.compile`` could not build the training step (no C++ compiler, say)."""
