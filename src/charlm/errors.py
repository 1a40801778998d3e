"""The one exception type that the command line turns into a one-line error."""


class CharlmError(Exception):
    """A problem with the user's input or files: printed as one line, never as a traceback.

    ``exit_code`` is what the command line exits with (2 for bad input, as argparse does).
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class CharlmWarning(UserWarning):
    """Something the user may want to know (a likely wrong encoding): the command line prints it as one ``note:`` line."""
