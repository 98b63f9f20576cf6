"""Errors that reach the user: each names the file or setting and what is wrong."""


class CnnkitError(Exception):
    """Base class; the CLI prints these as one clear line, without a traceback."""


class DataError(CnnkitError):
    """A dataset, folder or image file cannot be used."""


class ConfigError(CnnkitError):
    """A setting is invalid or inconsistent."""


class CheckpointError(CnnkitError):
    """A checkpoint or run folder is missing, unreadable or incompatible."""


class WeightsError(CnnkitError):
    """Pretrained weights are not available (offline) or do not fit the model."""
