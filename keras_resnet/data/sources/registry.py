"""One registry of the data sources, by name or by kind.

A source registers under a dataset name (``"digits"``: that exact name) or as a kind of names
(``"folder"``: any name its ``matches`` accepts, such as an existing directory). A look-up
tries the exact names first, then the kinds in the order they registered; a name nothing takes
is refused with the list of what is allowed. The source modules of ``keras_resnet.data.sources``
register themselves when the package is imported.

Example:
    >>> register("ones", lambda name, **options: make_ones_source())  # doctest: +SKIP
    >>> lookup("ones").name  # doctest: +SKIP
    'ones'
"""

import dataclasses
import os

from keras_resnet.errors import InvalidArgument, InvalidType

KINDS = ("dataset", "kind")


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered source: ``make(name, **options)`` gives its ``Source``.

    Attributes:
        name: the dataset name ("digits") or the name of the kind ("folder").
        make: ``(name, *, data_dir, download, manual_dir, training, seed, skip_unreadable)``
            -> ``Source``.
        matches: None for a dataset name (only that name); for a kind, ``name -> bool``.
        description: how the list of allowed names shows it.
    """

    name: str
    make: object
    matches: object = None
    description: str = ""

    @property
    def kind(self):
        return "dataset" if self.matches is None else "kind"


_ENTRIES = {}


def register(name, make, *, matches=None, description=None):
    """Register a source under a dataset ``name``, or as a kind of names with ``matches``.

    Registering a name again replaces its entry (in its place in the order).

    Args:
        name: a dataset name, or the name of a kind.
        make: ``(name, **options)`` -> ``Source`` (options: data_dir, download, manual_dir,
            training, seed, skip_unreadable).
        matches: None (``name`` exactly), or ``name -> bool`` for a kind of names.
        description: how the list of allowed names shows it; default ``repr(name)``.

    Returns:
        The registered :class:`Entry`.

    Example:
        >>> register("digits", make_digits_source)  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"`name` must be a non-empty str; got {name!r}.")
    for argument, value in (("make", make), ("matches", matches)):
        if value is not None and not callable(value):
            raise InvalidType(f"`{argument}` must be callable; got {type(value).__name__}.")
    if make is None:
        raise InvalidType("`make` must be callable; got None.")
    entry = Entry(name, make, matches, description or repr(name))
    _ENTRIES[name] = entry
    return entry


def unregister(name):
    """Remove the source registered as ``name``.

    Example:
        >>> unregister("ones")  # doctest: +SKIP
    """
    if name not in _ENTRIES:
        raise InvalidArgument(f"`name` {name!r} is not registered; registered: {registered()}.")
    del _ENTRIES[name]


def registered(kind=None):
    """The registered names (datasets and kinds, or only ``kind``: "dataset" or "kind"), in
    the order they are tried.

    Example:
        >>> registered("dataset")  # doctest: +SKIP
        ('digit_canvases', 'digits')
    """
    if kind is not None and kind not in KINDS:
        raise InvalidArgument(f"`kind` must be None or one of {', '.join(KINDS)}; got {kind!r}.")
    ordered = _ordered()
    return tuple(entry.name for entry in ordered if kind is None or entry.kind == kind)


def _ordered():
    """Exact dataset names first (sorted), then the kinds in the order they registered."""
    datasets = sorted((e for e in _ENTRIES.values() if e.matches is None), key=lambda e: e.name)
    return datasets + [e for e in _ENTRIES.values() if e.matches is not None]


def allowed():
    """What a dataset name may be, as the errors list it.

    Example:
        >>> allowed()  # doctest: +SKIP
        "'digit_canvases', 'digits', a labels file (*.csv), ..."
    """
    return ", ".join(entry.description for entry in _ordered())


def unknown_dataset(name, detail):
    """The one-line error for a dataset ``name`` no source takes: it names it, says why
    (``detail``) and lists what is allowed.

    Example:
        >>> str(unknown_dataset("nope", "not found")).startswith("`name` 'nope' is neither")
        True
    """
    return InvalidArgument(
        f"`name` {os.fspath(name)!r} is neither 'digits', an existing directory, nor a "
        f"tensorflow-datasets dataset ({detail}); allowed: {allowed()}."
    )


def lookup(name):
    """The :class:`Entry` that takes dataset ``name``: its exact name, else the first kind
    that matches; an unknown name raises :func:`unknown_dataset`.

    Example:
        >>> lookup("digits").name  # doctest: +SKIP
        'digits'
    """
    if isinstance(name, str) and name in _ENTRIES and _ENTRIES[name].matches is None:
        return _ENTRIES[name]
    for entry in _ordered():
        if entry.matches is not None and entry.matches(name):
            return entry
    where = os.path.abspath(os.path.expanduser(os.fspath(name)))
    raise unknown_dataset(name, f"no directory at {where!r}")


def get_source(name, **options):
    """The ``Source`` of dataset ``name``, made by the registered source that takes it.

    Args:
        name: a dataset name, a directory, a labels file or a tfds name (see :func:`allowed`).
        **options: data_dir, download, manual_dir, training, seed, skip_unreadable.

    Returns:
        A ``keras_resnet.data.sources.base.Source``.

    Example:
        >>> get_source("digits").class_names[:2]  # doctest: +SKIP
        ['0', '1']
    """
    return lookup(name).make(name, **options)
