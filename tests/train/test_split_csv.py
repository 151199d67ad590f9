"""``split.csv`` of a dataset folder is read by the shared table reader: same rows, same error messages."""

import pytest

pytest.importorskip("torch")

from spacelm.scene.table import TableError  # noqa: E402
from spacelm.train.data import list_records  # noqa: E402


def test_rows_of_the_asked_split_in_file_order(tmp_path):
    (tmp_path / "split.csv").write_text("id,split\nroom2,train\n\nroom0,val\nroom1,train\n")
    records = list_records(tmp_path, "train")
    assert [r.sample_id for r in records] == ["room2", "room1"]
    assert records[0].cloud_path == tmp_path / "pcd" / "room2.ply"


def test_a_missing_column_names_the_file_and_line(tmp_path):
    (tmp_path / "split.csv").write_text("id,fold\nroom0,train\n")
    with pytest.raises(TableError, match=r"split\.csv, line 1: missing column\(s\) 'split'; the header has 'id', "
                                         r"'fold'"):
        list_records(tmp_path, "train")
