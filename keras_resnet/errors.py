"""The errors that mean "the user asked for something we cannot do", as opposed to a bug.

Every check of a user's input (an argument, a file, a dataset name) raises one of these. They
are ordinary ``ValueError`` / ``TypeError`` / ``FileNotFoundError`` subclasses, so library callers
catch them as usual; the ``keras-resnet`` command prints their message as one line and exits 2,
while any other exception is a bug and keeps its traceback. Importing this module imports
nothing else.

Example:
    >>> try:
    ...     raise InvalidArgument("`depth` must be 6n+2; got 21.")
    ... except ValueError as error:
    ...     print(isinstance(error, UserError), error)
    True `depth` must be 6n+2; got 21.
"""


class UserError(Exception):
    """Base of every error caused by what the user gave: the message names it and what is allowed."""


class InvalidArgument(UserError, ValueError):
    """An argument, file or setting has a value we do not support."""


class InvalidType(UserError, TypeError):
    """An argument has a type we do not support."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


def check_positive_int(argument, value):
    """Raise :class:`InvalidArgument` unless ``value`` is a positive int (bools excluded).

    Example:
        >>> check_positive_int("epochs", 3)
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"`{argument}` must be a positive integer; got {value!r}.")


def check_fraction(argument, value):
    """Raise :class:`InvalidArgument` unless ``value`` is a number in [0, 1) (a rate).

    Example:
        >>> check_fraction("dropout", 0.2)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise InvalidArgument(f"`{argument}` must be a number in [0, 1); got {value!r}.")


def check_choice(argument, value, allowed):
    """Raise :class:`InvalidArgument` unless ``value`` is one of ``allowed``.

    Example:
        >>> check_choice("shortcut", "A", ("A", "B", "C"))
    """
    if value not in allowed:
        raise InvalidArgument(f"`{argument}` must be one of {', '.join(map(repr, allowed))}; got {value!r}.")
