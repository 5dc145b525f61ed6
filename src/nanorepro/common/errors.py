"""The one error type users see: a problem with their input, reported in one line, exit code 2."""


class UserError(Exception):
    """Bad input (unknown name, bad config value, malformed file): the CLI prints one line and exits 2."""

    exit_code = 2
