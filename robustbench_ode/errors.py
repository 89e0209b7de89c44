"""The one exception type for mistakes a user can fix; the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input from the user (unknown name, bad value, missing file, foreign checkpoint...)."""
