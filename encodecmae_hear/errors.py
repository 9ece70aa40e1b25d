"""`UserError`: a mistake the user can fix (a bad option, a missing or foreign file).
The command line prints its message in one line and exits with status 2, no traceback;
any other exception is a bug and keeps its traceback."""


class UserError(Exception):
    pass
