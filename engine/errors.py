"""User-facing errors: one line that names the file, key or value and what is allowed.

The CLI catches `UserError` and prints its message without a traceback (exit code 2);
anything else is a bug or a failed run (exit code 1). A message is always one printable
line: line breaks and control characters that came from the user's input (a key with a
newline, an escape sequence, a library's multi-line text) are shown escaped, never sent raw
to the terminal.
"""


def printable(text: object) -> str:
    """`text` with every non-printable character escaped (\\n, \\x1b, \\u2028), on one line."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class UserError(Exception):
    """A mistake the user can fix: bad config, bad data folder, bad checkpoint file."""

    def __init__(self, message: object = "") -> None:
        super().__init__(printable(message))


class ConfigError(UserError):
    """lab.toml or a command-line override is invalid."""


class DataError(UserError):
    """A dataset name, data folder or data file is unusable."""


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, foreign, too new or does not fit the model."""


class RunLockedError(UserError):
    """Another live process is training the run folder (it holds the folder's lock)."""


class StorageError(Exception):
    """The run folder stopped taking writes (full disk, lost permission) while a run trained.

    Not a `UserError`: the run had started, so it ends as failed (exit code 1); every
    checkpoint written before stays intact and the message says which one is the newest.
    """
