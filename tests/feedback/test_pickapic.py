"""Pick-a-Pic v2 Parquet export/import: schema, round trip, foreign files, validation of bad rows."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from feedback.pickapic import (
    PICKAPIC_SCHEMA,
    PickapicReader,
    PickapicRow,
    content_uid,
    iter_parquet,
    labels_for,
    read_parquet,
    write_parquet,
)

PUBLIC_TYPES = {
    "are_different": pa.bool_(),
    "best_image_uid": pa.string(),
    "caption": pa.string(),
    "created_at": pa.timestamp("ns"),
    "has_label": pa.bool_(),
    "image_0_uid": pa.string(),
    "image_0_url": pa.string(),
    "image_1_uid": pa.string(),
    "image_1_url": pa.string(),
    "jpg_0": pa.binary(),
    "jpg_1": pa.binary(),
    "label_0": pa.float64(),
    "label_1": pa.float64(),
    "model_0": pa.string(),
    "model_1": pa.string(),
    "ranking_id": pa.int64(),
    "user_id": pa.int64(),
    "num_example_per_prompt": pa.int64(),
}


def image_bytes(color: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format=fmt)
    return buffer.getvalue()


RED, GREEN, BLUE = image_bytes((255, 0, 0)), image_bytes((0, 255, 0)), image_bytes((0, 0, 255))
WHEN = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def sample_rows() -> list[PickapicRow]:
    common = {"model_0": "sd-base", "model_1": "sd-lora", "image_0_url": "", "image_1_url": ""}
    return [
        PickapicRow.from_choice(
            "a",
            caption="a red fox",
            jpg_0=RED,
            jpg_1=GREEN,
            image_0_uid="img-1",
            image_1_uid="img-2",
            user_id=7,
            ranking_id=101,
            created_at=WHEN,
            **common,
        ),
        PickapicRow.from_choice(
            "b",
            caption="a red fox",
            jpg_0=GREEN,
            jpg_1=BLUE,
            image_0_uid="img-2",
            image_1_uid="img-3",
            user_id=8,
            ranking_id=102,
            created_at=WHEN + timedelta(minutes=1),
            **common,
        ),
        PickapicRow.from_choice(
            "tie", caption="a blue lake", jpg_0=BLUE, jpg_1=RED, user_id=7, ranking_id=103, created_at=None, **common
        ),
        PickapicRow.from_choice(
            "both_bad",
            caption="a blue lake",
            jpg_0=BLUE,
            jpg_1=BLUE,
            image_0_uid="img-3",
            image_1_uid="img-3",
            user_id=9,
            ranking_id=104,
            # a non-UTC aware datetime is the same instant after the round trip
            created_at=datetime(2025, 3, 4, 7, 0, tzinfo=timezone(timedelta(hours=2))),
            **common,
        ),
        PickapicRow.from_choice("a", caption="a green field", jpg_0=GREEN, jpg_1=RED, ranking_id=105, **common),
    ]


def test_labels_for():
    assert labels_for("a") == (1.0, 0.0)
    assert labels_for("b") == (0.0, 1.0)
    assert labels_for("tie") == (0.5, 0.5)
    assert labels_for("both_bad") == (0.5, 0.5)
    with pytest.raises(ValueError, match="skip"):
        labels_for("skip")
    with pytest.raises(ValueError, match="both_bad"):
        labels_for("both_bad", both_bad="error")
    with pytest.raises(ValueError, match="unknown choice"):
        labels_for("left")


def test_round_trip_gives_the_same_rows(tmp_path):
    rows = sample_rows()
    path = tmp_path / "export.parquet"
    assert write_parquet(rows, path) == len(rows)
    back = read_parquet(path)
    assert back == rows
    assert back.skipped == 0
    assert (back[2].label_0, back[2].label_1, back[2].choice) == (0.5, 0.5, "tie")
    assert (back[3].label_0, back[3].label_1, back[3].choice, back[3].both_bad) == (0.5, 0.5, "both_bad", True)
    assert back[0].created_at.tzinfo is not None
    assert back[2].image_0_uid == content_uid(BLUE)  # no uid given: derived from the bytes


def test_written_file_follows_the_public_schema(tmp_path):
    path = tmp_path / "export.parquet"
    write_parquet(sample_rows(), path)
    table = pq.read_table(path)
    for name, type_ in PUBLIC_TYPES.items():
        assert table.schema.field(name).type == type_, name
    assert table.column_names[: len(PUBLIC_TYPES)] == list(PUBLIC_TYPES)
    data = table.to_pydict()
    assert data["has_label"] == [True] * 5
    assert data["are_different"] == [True, True, True, False, True]
    assert data["best_image_uid"] == ["img-1", "img-3", "", "", content_uid(GREEN)]
    assert data["num_example_per_prompt"] == [2, 2, 2, 2, 1]
    assert data["label_0"] == [1.0, 0.0, 0.5, 0.5, 1.0]
    assert data["label_1"] == [0.0, 1.0, 0.5, 0.5, 0.0]
    assert data["created_at"][0] == WHEN.replace(tzinfo=None)  # stored naive UTC, like Pick-a-Pic
    assert data["created_at"][3] == datetime(2025, 3, 4, 5, 0)
    assert data["jpg_0"][0] == RED
    metadata = pq.ParquetFile(path).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_row_groups_and_streaming(tmp_path):
    rows = sample_rows()
    path = tmp_path / "grouped.parquet"
    write_parquet(rows, path, compression="snappy", row_group_size=2)
    parquet = pq.ParquetFile(path)
    assert parquet.num_row_groups == 3
    assert parquet.metadata.row_group(0).column(0).compression == "SNAPPY"
    reader = iter_parquet(path)
    assert reader.num_rows == 5
    assert list(reader) == rows

    sized = tmp_path / "sized.parquet"
    write_parquet(rows, sized, row_group_bytes=1)  # tiny byte budget: one row per group
    assert pq.ParquetFile(sized).num_row_groups == 5
    write_parquet(rows, sized)  # default budget: a handful of small rows fit one group
    assert pq.ParquetFile(sized).num_row_groups == 1


def test_reads_a_plain_pyarrow_file_with_only_the_required_columns(tmp_path):
    jpeg = image_bytes((10, 20, 30), "JPEG")
    table = pa.table(
        {
            "caption": ["an owl", "a cat"],
            "jpg_0": pa.array([jpeg, RED], pa.binary()),
            "jpg_1": pa.array([GREEN, jpeg], pa.binary()),
            "label_0": [0.0, 0.5],
            "label_1": [1.0, 0.5],
            "__index_level_0__": [17, 18],  # pandas leftovers are ignored
        }
    )
    path = tmp_path / "foreign.parquet"
    pq.write_table(table, path)
    rows = read_parquet(path)
    assert len(rows) == 2
    owl, cat = rows
    assert (owl.caption, owl.jpg_0, owl.jpg_1, owl.label_0, owl.label_1) == ("an owl", jpeg, GREEN, 0.0, 1.0)
    assert owl.choice == "b" and cat.choice == "tie" and not cat.both_bad
    assert owl.image_0_uid == content_uid(jpeg)
    assert (owl.user_id, owl.ranking_id, owl.created_at, owl.model_0, owl.image_1_url) == (0, 0, None, "", "")
    assert owl.best_image_uid == content_uid(GREEN)


def test_reads_public_style_optional_columns(tmp_path):
    table = pa.table(
        {
            "caption": ["an owl"],
            "created_at": pa.array([1_700_000_000_123_456_789], pa.timestamp("ns")),  # nanoseconds are truncated
            "has_label": [True],
            "image_0_uid": ["u0"],
            "image_1_uid": [None],
            "jpg_0": pa.array([{"bytes": RED, "path": None}]),  # Hugging Face Image feature layout
            "jpg_1": pa.array([GREEN], pa.large_binary()),
            "label_0": pa.array([1], pa.int64()),
            "label_1": pa.array([0], pa.int64()),
            "model_0": ["m0"],
            "user_id": pa.array([None], pa.int64()),
            "ranking_id": [5],
        }
    )
    path = tmp_path / "public.parquet"
    pq.write_table(table, path)
    (row,) = read_parquet(path)
    assert row.created_at == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert (row.image_0_uid, row.image_1_uid, row.model_0, row.user_id, row.ranking_id) == (
        "u0",
        content_uid(GREEN),
        "m0",
        0,
        5,
    )
    assert (row.jpg_0, row.jpg_1, row.label_0, row.label_1, row.choice) == (RED, GREEN, 1.0, 0.0, "a")


def plain_file(path, records: list[dict]) -> None:
    columns = {name: [r[name] for r in records] for name in ("caption", "jpg_0", "jpg_1", "label_0", "label_1")}
    extra = {name: [r.get(name) for r in records] for name in ("has_label",) if any(name in r for r in records)}
    table = pa.table({**columns, **extra})
    pq.write_table(table, path)


GOOD = {"caption": "ok", "jpg_0": RED, "jpg_1": GREEN, "label_0": 1.0, "label_1": 0.0, "has_label": True}
BAD_ROWS = {
    "wrong labels": ({**GOOD, "label_0": 0.7, "label_1": 0.3}, "labels (0.7, 0.3) are not"),
    "both one": ({**GOOD, "label_0": 1.0, "label_1": 1.0}, "labels (1.0, 1.0) are not"),
    "negative label": ({**GOOD, "label_0": 1.0, "label_1": -1e-7}, "negative"),
    "missing label": ({**GOOD, "label_1": None}, "not numbers"),
    "undecodable image": ({**GOOD, "jpg_1": b"definitely not a png"}, "jpg_1 does not decode"),
    "truncated image": ({**GOOD, "jpg_0": RED[:40]}, "jpg_0 does not decode"),
    "empty image": ({**GOOD, "jpg_0": b""}, "jpg_0 is empty"),
    "empty caption": ({**GOOD, "caption": "  "}, "caption is empty"),
    "null caption": ({**GOOD, "caption": None}, "caption is empty"),
    "unlabelled": ({**GOOD, "has_label": False}, "has_label is false"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_rows_raise_naming_the_row_and_the_problem(tmp_path, case):
    record, problem = BAD_ROWS[case]
    path = tmp_path / "bad.parquet"
    plain_file(path, [GOOD, GOOD, record, GOOD])
    with pytest.raises(ValueError, match="row 2: ") as error:
        read_parquet(path)
    assert problem in str(error.value)
    assert str(path) in str(error.value)


def test_skip_mode_counts_and_reports_bad_rows(tmp_path):
    path = tmp_path / "mixed.parquet"
    records = [GOOD, *(record for record, _ in BAD_ROWS.values()), {**GOOD, "caption": "last"}]
    plain_file(path, records)
    rows = read_parquet(path, on_error="skip")
    assert [row.caption for row in rows] == ["ok", "last"]
    assert rows.skipped == len(BAD_ROWS)
    assert [error.split(": ")[1] for error in rows.errors] == [f"row {i}" for i in range(1, len(BAD_ROWS) + 1)]

    reader = iter_parquet(path, on_error="skip")
    assert len(list(reader)) == 2 and reader.skipped == len(BAD_ROWS)


def test_near_valid_labels_are_snapped_and_images_checks_can_be_turned_off(tmp_path):
    path = tmp_path / "near.parquet"
    plain_file(path, [{**GOOD, "label_0": 0.5000004, "label_1": 0.4999996}, {**GOOD, "jpg_1": b"not an image"}])
    with pytest.raises(ValueError, match="row 1: jpg_1"):
        read_parquet(path)
    rows = read_parquet(path, check_images=False)
    assert (rows[0].label_0, rows[0].label_1, rows[0].choice) == (0.5, 0.5, "tie")
    assert rows[1].jpg_1 == b"not an image"


def test_missing_required_columns_are_named(tmp_path):
    path = tmp_path / "nolabels.parquet"
    pq.write_table(pa.table({"caption": ["x"], "jpg_0": [RED], "jpg_1": [GREEN]}), path)
    with pytest.raises(ValueError, match="missing column\\(s\\) label_0, label_1"):
        read_parquet(path)


def test_write_rejects_bad_rows_before_writing(tmp_path):
    rows = sample_rows()
    rows[3].label_0 = 0.9
    path = tmp_path / "never.parquet"
    with pytest.raises(ValueError, match="row 3: "):
        write_parquet(rows, path)
    assert not path.exists()
    with pytest.raises(ValueError, match="row 0: caption is empty"):
        write_parquet([PickapicRow.from_choice("a", caption="", jpg_0=RED, jpg_1=GREEN)], path)
    with pytest.raises(ValueError, match="row 0: jpg_0 does not decode"):
        write_parquet([PickapicRow.from_choice("a", caption="x", jpg_0=b"nope", jpg_1=GREEN)], path)


def test_write_snaps_labels_without_changing_the_callers_rows(tmp_path):
    row = PickapicRow(caption="x", jpg_0=RED, jpg_1=GREEN, label_0=0.9999999, label_1=0.0)
    path = tmp_path / "snap.parquet"
    write_parquet([row], path)
    assert row.label_0 == 0.9999999
    assert read_parquet(path)[0].label_0 == 1.0


def test_empty_export_round_trips(tmp_path):
    path = tmp_path / "empty.parquet"
    assert write_parquet([], path) == 0
    assert pq.read_schema(path).names == PICKAPIC_SCHEMA.names
    assert read_parquet(path) == []


def test_a_label_replaces_the_path_in_every_message(tmp_path):
    """Messages shown to someone who must not learn server paths name the file by a label instead."""
    bad_row = tmp_path / "bad.parquet"
    plain_file(bad_row, [GOOD, {**GOOD, "jpg_1": b"not an image"}])
    no_labels = tmp_path / "nolabels.parquet"
    pq.write_table(pa.table({"caption": ["x"], "jpg_0": [RED], "jpg_1": [GREEN]}), no_labels)
    not_parquet = tmp_path / "text.parquet"
    not_parquet.write_bytes(b"not parquet at all")

    for path, problem in ((bad_row, "row 1: jpg_1 does not decode"), (no_labels, "missing column(s) label_0")):
        with pytest.raises(ValueError) as error:
            read_parquet(path, label="the upload")
        assert str(error.value).startswith("the upload: ") and problem in str(error.value)
        assert str(tmp_path) not in str(error.value)
    with pytest.raises(ValueError) as error:  # pyarrow's own message: the file is opened as a file object
        read_parquet(not_parquet, label="the upload")
    assert "magic bytes" in str(error.value) and str(tmp_path) not in str(error.value)


def test_reading_goes_a_batch_at_a_time_and_counts_the_rows_read(tmp_path):
    path = tmp_path / "one_group.parquet"
    rows = sample_rows() * 50
    write_parquet(rows, path, row_group_size=len(rows))  # a single row group
    reader = PickapicReader(path, batch_rows=16)
    first = next(reader)
    assert first.caption == rows[0].caption and reader.rows_read == 1
    assert len(list(reader)) == len(rows) - 1 and reader.rows_read == len(rows)
