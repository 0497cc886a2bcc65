"""The errors and warnings of checkpoints."""

__all__ = ["CheckpointError", "CheckpointWarning"]


class CheckpointError(ValueError):
    """A file that cannot be restored: truncated, corrupt, not a checkpoint, or failing its digest.

    The message names the file and what is wrong. A template that does not match an intact file
    raises a plain ``ValueError`` instead, so :func:`restore_latest_valid` never skips past it.
    """


class CheckpointWarning(UserWarning):
    """Issued by :func:`restore_latest_valid` for each unreadable checkpoint it skips."""
