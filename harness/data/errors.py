"""The one exception type the data layer raises for bad user input."""
from __future__ import annotations


class DatasetError(ValueError):
    """A dataset spec, path, split or file is unusable.

    The message is meant to be shown to the user as is: it names the offending
    path / key / split and, where it helps, lists the valid choices.
    """


def from_worker(err: DatasetError) -> DatasetError:
    """The error as the dataset raised it, when a ``DataLoader`` worker re-raised it.

    A worker process re-raises with the whole worker traceback as the message
    ("Caught DatasetError in DataLoader worker process 0. Original Traceback ...");
    the user should see the one line the dataset wrote, naming the file.
    """
    text = str(err)
    marker = f"{DatasetError.__name__}: "
    if "Original Traceback" not in text:
        return err
    lines = [line for line in text.strip().splitlines() if marker in line]
    return DatasetError(lines[-1].split(marker, 1)[1].strip()) if lines else err
