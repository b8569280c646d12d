class ArtrainError(Exception):
    """A user-facing problem: the message is one line saying what is wrong and what to do."""
    exit_code = 1

class UsageError(ArtrainError):
    """Bad arguments or input files given by the user (exit code 2)."""
    exit_code = 2
