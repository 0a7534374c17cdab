"""The exception types that mean "the user gave us something we cannot use".

The CLI turns a `UserError` into one line on stderr and exit code 2; every other exception is a bug.
`SampleFailure` is the UserError of one emulated inference (a fault, a timeout): `simulate` records it against
the sample and runs the others.
"""


class UserError(Exception):
    """Bad input: a missing or malformed file, an unsupported model, options that do not fit."""


class SampleFailure(UserError):
    """One sample's inference faulted, timed out or returned no result in an emulator."""
