"""Pick-a-Pic (v2) schema Parquet export and import (plain Python + pyarrow + Pillow, no Django).

The column names and types follow ``yuvalkirstain/pickapic_v2`` so that reward-model training code written for
Pick-a-Pic reads our exports unchanged:

====================== ============= ==========================================================================
column                 type          meaning
====================== ============= ==========================================================================
are_different          bool          ``image_0_uid != image_1_uid``
best_image_uid         string        uid of the side labelled 1, ``""`` for ties
caption                string        the prompt
created_at             timestamp[ns] when the vote was cast (naive, UTC)
has_label              bool          always true in our exports
image_0_uid/_1_uid     string        image ids
image_0_url/_1_url     string        image URLs (may be empty)
jpg_0 / jpg_1          binary        encoded image bytes; the name is historical: any format Pillow decodes is
                                     accepted, and our exports store the PNG bytes we keep
label_0 / label_1      float64       (1, 0), (0, 1) or (0.5, 0.5) for a tie
model_0 / model_1      string        generator names
ranking_id, user_id    int64         vote id, annotator id
num_example_per_prompt int64         rows in the file that share this caption
choice (ours)          string        "a", "b", "tie" or "both_bad" (null in foreign files)
both_bad (ours)        bool          the annotator marked both images bad (labelled as a tie)
criterion (ours)       string        the question the vote answers (a campaign's question key); files without
                                     the column, and null values, read as the default question ``overall``
====================== ============= ==========================================================================

Reading accepts our files and any file with at least ``caption``, ``jpg_0``, ``jpg_1``, ``label_0`` and
``label_1``; other columns (``__index_level_0__`` included) are optional or ignored. Every row is validated;
bad rows raise a ``ValueError`` naming the row, or are skipped and counted with ``on_error="skip"``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from feedback.criteria import DEFAULT_CRITERION, CriteriaError, check_criterion_key

__all__ = [
    "PICKAPIC_SCHEMA",
    "REQUIRED_COLUMNS",
    "PickapicReader",
    "PickapicRow",
    "PickapicRows",
    "content_uid",
    "iter_parquet",
    "labels_for",
    "read_parquet",
    "write_parquet",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")

PICKAPIC_SCHEMA = pa.schema(
    [
        ("are_different", pa.bool_()),
        ("best_image_uid", pa.string()),
        ("caption", pa.string()),
        ("created_at", pa.timestamp("ns")),
        ("has_label", pa.bool_()),
        ("image_0_uid", pa.string()),
        ("image_0_url", pa.string()),
        ("image_1_uid", pa.string()),
        ("image_1_url", pa.string()),
        ("jpg_0", pa.binary()),
        ("jpg_1", pa.binary()),
        ("label_0", pa.float64()),
        ("label_1", pa.float64()),
        ("model_0", pa.string()),
        ("model_1", pa.string()),
        ("ranking_id", pa.int64()),
        ("user_id", pa.int64()),
        ("num_example_per_prompt", pa.int64()),
        ("choice", pa.string()),
        ("both_bad", pa.bool_()),
        ("criterion", pa.string()),
    ],
    metadata={"imagerlhf": json.dumps({"format": "pickapic_v2", "version": 1})},
)

VALID_LABELS: tuple[tuple[float, float], ...] = ((1.0, 0.0), (0.0, 1.0), (0.5, 0.5))
LABEL_TOLERANCE = 1e-6
CHOICE_FOR_LABELS = {(1.0, 0.0): "a", (0.0, 1.0): "b", (0.5, 0.5): "tie"}
ROW_GROUP_BYTES = 64 * 1024 * 1024  # ~64 MiB of image bytes per row group: a streamed group fits easily in memory.
MAX_ROW_GROUP_ROWS = 10_000
BATCH_ROWS = 64  # rows decoded into Python objects at a time while reading (a row group may be far larger)
_IMAGE_COLUMNS = ("jpg_0", "jpg_1")
_TEXT_COLUMNS = [f.name for f in PICKAPIC_SCHEMA if f.name not in _IMAGE_COLUMNS]

OnError = Literal["raise", "skip"]


def labels_for(choice: str, *, both_bad: Literal["tie", "error"] = "tie") -> tuple[float, float]:
    """Pick-a-Pic labels ``(label_0, label_1)`` for a vote choice.

    "a" → (1, 0), "b" → (0, 1), "tie" → (0.5, 0.5). "both_bad" is labelled as a tie (0.5, 0.5) by default —
    neither image is preferred — or raises with ``both_bad="error"`` for exports that must leave such votes out.
    "skip" (no judgement) and unknown choices raise ``ValueError``.
    """
    if choice == "a":
        return (1.0, 0.0)
    if choice == "b":
        return (0.0, 1.0)
    if choice == "tie" or (choice == "both_bad" and both_bad == "tie"):
        return (0.5, 0.5)
    if choice == "both_bad":
        raise ValueError("'both_bad' votes are excluded from this export (both_bad='error')")
    if choice == "skip":
        raise ValueError("a 'skip' vote has no label")
    raise ValueError(f"unknown choice {choice!r}; expected 'a', 'b', 'tie' or 'both_bad'")


def content_uid(data: bytes) -> str:
    """Deterministic image uid from its bytes (first 32 hex digits of SHA-256), used when no uid is given."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass(slots=True)
class PickapicRow:
    """One labelled comparison. Side 0 is the pair's image a, side 1 its image b.

    Empty image uids are filled from the image bytes (:func:`content_uid`). ``created_at`` may be naive (taken as
    UTC) or aware; rows read back carry aware UTC datetimes. ``choice``, ``both_bad`` and ``criterion`` (the question
    the vote answers) are our extras.
    """

    caption: str
    jpg_0: bytes
    jpg_1: bytes
    label_0: float
    label_1: float
    image_0_uid: str = ""
    image_1_uid: str = ""
    model_0: str = ""
    model_1: str = ""
    image_0_url: str = ""
    image_1_url: str = ""
    user_id: int = 0
    ranking_id: int = 0
    created_at: datetime | None = None
    choice: str | None = None
    both_bad: bool = False
    criterion: str = DEFAULT_CRITERION

    def __post_init__(self) -> None:
        if not self.image_0_uid:
            self.image_0_uid = content_uid(self.jpg_0)
        if not self.image_1_uid:
            self.image_1_uid = content_uid(self.jpg_1)

    @classmethod
    def from_choice(cls, choice: str, **fields: Any) -> PickapicRow:
        """A row labelled from a vote choice (see :func:`labels_for`); ``both_bad`` is set for "both_bad"."""
        label_0, label_1 = labels_for(choice)
        return cls(label_0=label_0, label_1=label_1, choice=choice, both_bad=choice == "both_bad", **fields)

    @property
    def is_tie(self) -> bool:
        return self.label_0 == self.label_1

    @property
    def best_image_uid(self) -> str:
        """uid of the side labelled 1, ``""`` for a tie."""
        if self.is_tie:
            return ""
        return self.image_0_uid if self.label_0 > self.label_1 else self.image_1_uid


class PickapicRows(list[PickapicRow]):
    """The rows read from a file; ``skipped`` and ``errors`` report rows left out with ``on_error="skip"``."""

    def __init__(self, rows: Iterable[PickapicRow] = (), skipped: int = 0, errors: list[str] | None = None) -> None:
        super().__init__(rows)
        self.skipped = skipped
        self.errors: list[str] = errors or []


# --------------------------------------------------------------------------------------------------------------
# Validation


def _canonical_labels(label_0: Any, label_1: Any) -> tuple[float, float]:
    """The exact valid label pair within tolerance, or ``ValueError`` describing the problem."""
    try:
        values = (float(label_0), float(label_1))
    except (TypeError, ValueError):
        raise ValueError(f"labels ({label_0!r}, {label_1!r}) are not numbers") from None
    if any(math.isnan(v) for v in values):
        raise ValueError(f"labels {values} contain NaN")
    if any(v < 0 for v in values):
        raise ValueError(f"labels {values} are negative")
    for valid in VALID_LABELS:
        if all(abs(v - w) <= LABEL_TOLERANCE for v, w in zip(values, valid, strict=True)):
            return valid
    raise ValueError(f"labels {values} are not (1, 0), (0, 1) or (0.5, 0.5)")


def _check_image(name: str, data: Any) -> bytes:
    if isinstance(data, dict):  # Hugging Face Image feature: struct<bytes, path>
        data = data.get("bytes")
    if not data:
        raise ValueError(f"{name} is empty")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"{name} is {type(data).__name__}, not bytes")
    return bytes(data)


def _decode_image(name: str, data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, DecompressionBombError, ...)
        raise ValueError(f"{name} does not decode as an image ({type(exc).__name__}: {exc})") from None


def _validate(row: PickapicRow, *, check_images: bool) -> tuple[float, float]:
    """The row's canonical labels, or ``ValueError`` describing its first problem."""
    if not isinstance(row.caption, str) or not row.caption.strip():
        raise ValueError("caption is empty")
    labels = _canonical_labels(row.label_0, row.label_1)
    for name in _IMAGE_COLUMNS:
        data = _check_image(name, getattr(row, name))
        if check_images:
            _decode_image(name, data)
    try:
        check_criterion_key(row.criterion)
    except CriteriaError as exc:
        raise ValueError(f"criterion {row.criterion!r}: {exc}") from None
    if row.choice is not None:
        try:
            expected = labels_for(row.choice)
        except ValueError as exc:
            raise ValueError(f"choice {row.choice!r}: {exc}") from None
        if expected != labels:
            raise ValueError(f"choice {row.choice!r} disagrees with labels {labels}")
    return labels


# --------------------------------------------------------------------------------------------------------------
# Writing


def _naive_utc_ns(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _table(rows: list[PickapicRow], per_caption: Counter[str]) -> pa.Table:
    columns: dict[str, list[Any]] = {
        "are_different": [r.image_0_uid != r.image_1_uid for r in rows],
        "best_image_uid": [r.best_image_uid for r in rows],
        "caption": [r.caption for r in rows],
        "created_at": [_naive_utc_ns(r.created_at) for r in rows],
        "has_label": [True] * len(rows),
        "image_0_uid": [r.image_0_uid for r in rows],
        "image_0_url": [r.image_0_url for r in rows],
        "image_1_uid": [r.image_1_uid for r in rows],
        "image_1_url": [r.image_1_url for r in rows],
        "jpg_0": [bytes(r.jpg_0) for r in rows],
        "jpg_1": [bytes(r.jpg_1) for r in rows],
        "label_0": [r.label_0 for r in rows],
        "label_1": [r.label_1 for r in rows],
        "model_0": [r.model_0 for r in rows],
        "model_1": [r.model_1 for r in rows],
        "ranking_id": [int(r.ranking_id) for r in rows],
        "user_id": [int(r.user_id) for r in rows],
        "num_example_per_prompt": [per_caption[r.caption] for r in rows],
        "choice": [r.choice for r in rows],
        "both_bad": [bool(r.both_bad) for r in rows],
        "criterion": [r.criterion for r in rows],
    }
    return pa.Table.from_pydict(columns, schema=PICKAPIC_SCHEMA)


def _rows_per_group(rows: list[PickapicRow], row_group_bytes: int) -> int:
    if not rows:
        return 1
    average = sum(len(r.jpg_0) + len(r.jpg_1) + len(r.caption) + 256 for r in rows) / len(rows)
    return max(1, min(MAX_ROW_GROUP_ROWS, int(row_group_bytes // average)))


def write_parquet(
    rows: Iterable[PickapicRow],
    path: str | os.PathLike[str],
    *,
    compression: Literal["zstd", "snappy"] = "zstd",
    row_group_size: int | None = None,
    row_group_bytes: int = ROW_GROUP_BYTES,
    check_images: bool = True,
) -> int:
    """Write rows as a Pick-a-Pic v2 Parquet file (:data:`PICKAPIC_SCHEMA`); returns the number of rows written.

    Rows are validated first (same checks as reading; ``check_images=False`` skips decoding the images) and a bad
    row raises ``ValueError`` naming its index before anything is written. ``num_example_per_prompt`` is
    counted over this file, so all rows are held in memory: shard very large exports. Row groups hold about
    ``row_group_bytes`` of image data (at most 10,000 rows) unless ``row_group_size`` fixes the row count.
    Image columns are written without dictionary encoding or statistics. The file is written next to ``path``
    and renamed into place, so a failed export never leaves a half-written file behind.
    """
    rows = list(rows)
    for index, row in enumerate(rows):
        try:
            labels = _validate(row, check_images=check_images)
        except ValueError as exc:
            raise ValueError(f"row {index}: {exc}") from None
        if labels != (row.label_0, row.label_1):  # snap near-valid labels without touching the caller's row
            rows[index] = replace(row, label_0=labels[0], label_1=labels[1])
    per_caption = Counter(r.caption for r in rows)
    group = row_group_size or _rows_per_group(rows, row_group_bytes)
    target = os.fspath(path)
    partial = f"{target}.partial-{os.getpid()}"
    try:
        with pq.ParquetWriter(
            partial,
            PICKAPIC_SCHEMA,
            compression=compression,
            use_dictionary=_TEXT_COLUMNS,
            write_statistics=_TEXT_COLUMNS,
        ) as writer:
            for start in range(0, len(rows), group):
                writer.write_table(_table(rows[start : start + group], per_caption), row_group_size=group)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return len(rows)


# --------------------------------------------------------------------------------------------------------------
# Reading


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not an integer id") from None


def _microsecond_timestamps(table: pa.Table) -> pa.Table:
    """``created_at`` truncated to microseconds, which is all ``datetime`` holds (public files use ns)."""
    if "created_at" not in table.column_names:
        return table
    index = table.column_names.index("created_at")
    column = table.column(index)
    if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
        column = pc.cast(column, pa.timestamp("us", tz=column.type.tz), safe=False)
        table = table.set_column(index, "created_at", column)
    return table


def _aware_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):  # e.g. pandas.Timestamp out of range, or a date
        value = datetime.fromisoformat(str(value))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row_from_record(record: dict[str, Any]) -> PickapicRow:
    """A validated-later row from one Parquet record; raises ``ValueError`` for structural problems."""
    if record.get("has_label") is False:
        raise ValueError("has_label is false (unlabelled row)")
    caption = record.get("caption")
    if caption is None:
        raise ValueError("caption is empty")
    images = [_check_image(name, record.get(name)) for name in _IMAGE_COLUMNS]
    both_bad = bool(record.get("both_bad") or False)
    choice = record.get("choice")
    label_0, label_1 = _canonical_labels(record.get("label_0"), record.get("label_1"))
    if choice is None:
        choice = "both_bad" if both_bad else CHOICE_FOR_LABELS[(label_0, label_1)]
    return PickapicRow(
        caption=str(caption),
        jpg_0=images[0],
        jpg_1=images[1],
        label_0=label_0,
        label_1=label_1,
        image_0_uid=_text(record.get("image_0_uid")),
        image_1_uid=_text(record.get("image_1_uid")),
        model_0=_text(record.get("model_0")),
        model_1=_text(record.get("model_1")),
        image_0_url=_text(record.get("image_0_url")),
        image_1_url=_text(record.get("image_1_url")),
        user_id=_int(record.get("user_id")),
        ranking_id=_int(record.get("ranking_id")),
        created_at=_aware_utc(record.get("created_at")),
        choice=str(choice),
        both_bad=both_bad or choice == "both_bad",
        criterion=_text(record.get("criterion")) or DEFAULT_CRITERION,
    )


class PickapicReader(Iterator[PickapicRow]):
    """Streams validated rows from a Pick-a-Pic Parquet file, ``batch_rows`` rows at a time.

    ``skipped`` and ``errors`` (messages naming the row) grow as bad rows are met with ``on_error="skip"``;
    ``num_rows`` is the file's row count and ``rows_read`` how many rows were examined so far. With
    ``on_error="raise"`` the first bad row raises ``ValueError``. Messages start with ``label`` (default: the
    path); give another label when the messages are shown to someone who must not learn server paths.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        on_error: OnError = "raise",
        check_images: bool = True,
        label: str | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.path = os.fspath(path)
        self.label = self.path if label is None else label
        self.on_error = on_error
        self.check_images = check_images
        self.skipped = 0
        self.errors: list[str] = []
        self.rows_read = 0
        self._batch_rows = batch_rows
        # Opened from a Python file object, pyarrow's own errors never name the path either.
        self._handle = open(self.path, "rb")  # noqa: SIM115 - closed by close() or the end of the rows
        try:
            self._file = pq.ParquetFile(self._handle)
        except Exception:
            self._handle.close()
            raise
        names = set(self._file.schema_arrow.names)
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            self._release()
            raise ValueError(f"{self.label}: not a Pick-a-Pic file, missing column(s) {', '.join(missing)}")
        self.num_rows: int = self._file.metadata.num_rows
        self._columns = [f.name for f in PICKAPIC_SCHEMA if f.name in names]
        self._rows = self._generate()

    def _release(self) -> None:
        self._file.close()
        self._handle.close()

    def _generate(self) -> Generator[PickapicRow, None, None]:
        try:
            for batch in self._file.iter_batches(batch_size=self._batch_rows, columns=self._columns):
                table = _microsecond_timestamps(pa.Table.from_batches([batch]))
                for record in table.to_pylist():
                    try:
                        row = _row_from_record(record)
                        _validate(row, check_images=self.check_images)
                    except ValueError as exc:
                        message = f"{self.label}: row {self.rows_read}: {exc}"
                        if self.on_error == "raise":
                            raise ValueError(message) from None
                        self.skipped += 1
                        self.errors.append(message)
                        self.rows_read += 1
                    else:
                        self.rows_read += 1
                        yield row
        finally:
            self._release()

    def __iter__(self) -> PickapicReader:
        return self

    def __next__(self) -> PickapicRow:
        return next(self._rows)

    def close(self) -> None:
        """Stop early and release the file."""
        self._rows.close()
        self._release()


def iter_parquet(
    path: str | os.PathLike[str], *, on_error: OnError = "raise", check_images: bool = True, label: str | None = None
) -> PickapicReader:
    """Stream validated :class:`PickapicRow` objects a batch at a time (see :class:`PickapicReader`)."""
    return PickapicReader(path, on_error=on_error, check_images=check_images, label=label)


def read_parquet(
    path: str | os.PathLike[str], *, on_error: OnError = "raise", check_images: bool = True, label: str | None = None
) -> PickapicRows:
    """Read and validate every row of a Pick-a-Pic Parquet file (ours or the public schema).

    Validation: labels are (1, 0), (0, 1) or (0.5, 0.5) within 1e-6 and non-negative (snapped to the exact
    values); both images decode with Pillow (``check_images=False`` only checks they are non-empty bytes); the
    caption is non-empty; ``has_label``, when present, is true; our ``choice`` column, when set, matches the
    labels. A bad row raises ``ValueError("<path or label>: row <i>: <problem>")``; with ``on_error="skip"`` bad
    rows are left out and the result's ``skipped`` / ``errors`` report them. Missing optional columns default to ``""``
    / 0 / ``None``, image uids to :func:`content_uid`, and ``choice`` is derived from the labels.
    """
    reader = iter_parquet(path, on_error=on_error, check_images=check_images, label=label)
    rows = list(reader)
    return PickapicRows(rows, skipped=reader.skipped, errors=reader.errors)
