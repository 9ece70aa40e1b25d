"""`UserError`: a mistake the user can fix (a bad option, a missing or foreign file).
The command line prints its message in one line and exits with status 2, no traceback;
any other exception is a bug and keeps its traceback. `one_line`: how every message is
folded to one line."""


class UserError(Exception):
    pass


def one_line(message, limit: int | None = None) -> str:
    """An error or message as one line (white space folded), cut to `limit` characters."""
    text = " ".join(str(message).split())
    return text if limit is None else text[:limit]
