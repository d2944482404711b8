"""Fixtures shared by the data-layer tests: the real datasets in ../shared/data."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"shared dataset {path} not available")
    return path


@pytest.fixture(scope="session")
def voc2007_dir() -> Path:
    """5 genuine VOC2007 images: 000001-000004 in test, 000005 (2 difficult chairs) in trainval."""
    return _shared("voc-sample", "VOC2007")


@pytest.fixture(scope="session")
def voc_sample_dir() -> Path:
    """The folder holding both VOC2007 and VOC2012 (ambiguous on purpose)."""
    return _shared("voc-sample")


@pytest.fixture(scope="session")
def bccd_dir() -> Path:
    """BCCD in VOC layout, with two degenerate boxes in the train split."""
    return _shared("bccd")
