"""The one delimited-text reader: rows numbered as in the file, short rows padded, errors naming the line."""

import pytest

from spacelm.scene.table import TableError, read_rows


def test_rows_keep_their_file_line_numbers_and_short_rows_read_empty_cells():
    text = ["id\tname\tcolour\n", "1\t bed \tred\n", "\n", "  \t \n", "2\tsofa\n"]
    assert read_rows(text, "labels.tsv", ("name",), delimiter="\t") == [
        (2, {"id": "1", "name": "bed", "colour": "red"}),
        (5, {"id": "2", "name": "sofa", "colour": ""}),
    ]


@pytest.mark.parametrize("text, message", [
    ([], "t.csv: empty file, expected a header with x, y"),
    (["x,z\n", "1,2\n"], "t.csv, line 1: missing column(s) 'y'; the header has 'x', 'z'"),
    (["x,y\n", "1,2\n", "1,2,3\n"], "t.csv, line 3: 3 comma-separated fields, the header has 2"),
    (["x,y\n", "1," + "9" * 200_000 + "\n"], "t.csv, line 2: malformed comma-separated text"),  # > csv's field limit
])
def test_errors_name_the_origin_and_line(text, message):
    with pytest.raises(TableError) as error:
        read_rows(text, "t.csv", ("x", "y"))
    assert str(error.value).startswith(message)
    assert isinstance(error.value, ValueError)  # callers that catch ValueError keep working


def test_required_cells_must_be_reached_when_asked():
    text = ["id,name,colour\n", "1,bed\n"]
    assert read_rows(text, "t.csv", ("name",), cells_required=True) == [(2, {"id": "1", "name": "bed", "colour": ""})]
    with pytest.raises(TableError, match=r"t\.csv, line 2: 2 fields, no value for 'colour'"):
        read_rows(text, "t.csv", ("name", "colour"), cells_required=True)
