"""The one exception type that means "the user gave us something we cannot use".

The CLI turns a `UserError` into one line on stderr and exit code 2; every other exception is a bug.
"""


class UserError(Exception):
    """Bad input: a missing or malformed file, an unsupported model, options that do not fit."""
