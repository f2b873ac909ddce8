"""New cases of the reliability suite: crafted memory files, PNG/JPEG declaring 20000x20000."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reliability import crafted_files
from reliability.crafted_files import CASES, Crafted
from reliability.report import Row

pytestmark = pytest.mark.unit


@pytest.mark.parametrize('case', CASES, ids=[c.name for c in CASES])
def test_crafted_file_is_refused_with_a_message(tmp_path: Path, case: Crafted) -> None:
    got, message = crafted_files.run_case(tmp_path, case)
    assert got != 'crash', message
    assert got == 'refused', f'{case.name} loaded silently'
    assert message


def test_no_crafted_file_crashes_and_the_row_reports_each(tmp_path: Path) -> None:
    row = crafted_files.crafted_files(tmp_path)
    assert row.tried == len(CASES)
    assert row.crashes == 0, row.problems
    assert row.errors + row.failures == len(CASES)
    assert row.errors == len(CASES)  # every one refused, structural and value cases alike


def declared_huge_rows(n: int) -> list[Row]:
    """The converter's row for the declared-huge cases among ``n`` compressed cases."""
    from reliability import converter
    from reliability.image_cases import compressed_cases

    cases = [c for c in compressed_cases(np.random.default_rng(0), n) if 'declared' in c.kind]
    assert {c.kind for c in cases} == {
        'compressed/declared-huge-png',
        'compressed/declared-huge-jpeg',
    }
    return [converter.run_cases('declared', cases)]


def test_declared_huge_images_are_refused_from_the_header() -> None:
    pytest.importorskip('sensor_msgs.msg')
    (row,) = declared_huge_rows(40)
    assert row.tried == 8
    assert row.errors == 8
    assert row.ok(), row.problems


def test_the_suite_sees_a_decoder_reached_without_the_header_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the header check gone (as before io/image_header.py), these cases fail the row."""
    pytest.importorskip('sensor_msgs.msg')
    from flash_vstream_ros.ros import images

    monkeypatch.setattr(images, 'check_declared_size', lambda data, max_side: None)
    (row,) = declared_huge_rows(10)  # one PNG, one JPEG: a decoder may allocate 1.2 GB each
    assert not row.ok()
    assert any('rejected for another reason' in p for p in row.problems), row.problems
