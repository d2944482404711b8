"""The one exception type the data layer raises for bad user input."""
from __future__ import annotations


class DatasetError(ValueError):
    """A dataset spec, path, split or file is unusable.

    The message is meant to be shown to the user as is: it names the offending
    path / key / split and, where it helps, lists the valid choices.
    """
