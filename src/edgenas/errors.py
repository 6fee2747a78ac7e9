"""Errors that are the user's to fix.

A `UserError` carries one line that names the problem and the fix. The CLI prints it and exits
with status 2, with no traceback; library callers can catch it like any exception.
"""


class UserError(Exception):
    """Bad input (a malformed string, a missing file, an impossible setting)."""

    exit_code = 2
