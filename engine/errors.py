"""User-facing errors: one line that names the file, key or value and what is allowed.

The CLI catches `UserError` and prints its message without a traceback (exit code 2);
anything else is a bug or a failed run (exit code 1).
"""


class UserError(Exception):
    """A mistake the user can fix: bad config, bad data folder, bad checkpoint file."""


class ConfigError(UserError):
    """lab.toml or a command-line override is invalid."""


class DataError(UserError):
    """A dataset name, data folder or data file is unusable."""


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, foreign, too new or does not fit the model."""


class StorageError(Exception):
    """The run folder stopped taking writes (full disk, lost permission) while a run trained.

    Not a `UserError`: the run had started, so it ends as failed (exit code 1); every
    checkpoint written before stays intact and the message says which one is the newest.
    """
