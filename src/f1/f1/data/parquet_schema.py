"""Arrow types and schema metadata for LeRobot parquet files, written without pandas or ``datasets``.

The data files carry the ``huggingface`` schema metadata that ``datasets`` 4.x writes, and
``meta/tasks.parquet`` carries the ``pandas`` metadata that makes the task string the DataFrame index,
so files we write load unchanged in LeRobot (which reads them through ``datasets`` and pandas).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from f1.data.features import IMAGE_DTYPE, FeatureSpec

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
TASK_INDEX_COLUMN = "task_index"
PANDAS_INDEX_COLUMN = "__index_level_0__"


def arrow_type(spec: FeatureSpec) -> pa.DataType:
    """Arrow column type of a stored (non-video) feature: scalar, fixed-size list or PNG struct."""
    if spec.dtype == IMAGE_DTYPE:
        return IMAGE_STRUCT
    value_type = pa.from_numpy_dtype(np.dtype(spec.dtype))
    if spec.shape == (1,):
        return value_type
    if len(spec.shape) == 1:
        return pa.list_(value_type, spec.shape[0])
    raise ValueError(
        f"feature {spec.name!r}: only scalar and 1-d numeric features are stored, got {spec.shape}"
    )


def _hf_feature(spec: FeatureSpec) -> dict[str, Any]:
    if spec.dtype == IMAGE_DTYPE:
        return {"_type": "Image"}
    value = {"dtype": spec.dtype, "_type": "Value"}
    if spec.shape == (1,):
        return value
    return {"feature": value, "length": spec.shape[0], "_type": "List"}


def data_schema(specs: Sequence[FeatureSpec]) -> pa.Schema:
    """Schema of ``data/chunk-*/file-*.parquet`` for the stored features, in the given order."""
    fields = [pa.field(s.name, arrow_type(s)) for s in specs]
    hf_meta = {"info": {"features": {s.name: _hf_feature(s) for s in specs}}}
    return pa.schema(fields, metadata={"huggingface": json.dumps(hf_meta)})


def tasks_table(tasks: Sequence[str]) -> pa.Table:
    """``meta/tasks.parquet``: the task string as the (pandas) index and its ``task_index``."""
    pandas_meta = {
        "index_columns": [PANDAS_INDEX_COLUMN],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": TASK_INDEX_COLUMN,
                "field_name": TASK_INDEX_COLUMN,
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": PANDAS_INDEX_COLUMN,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    schema = pa.schema(
        [pa.field(TASK_INDEX_COLUMN, pa.int64()), pa.field(PANDAS_INDEX_COLUMN, pa.string())],
        metadata={"pandas": json.dumps(pandas_meta)},
    )
    return pa.table(
        {TASK_INDEX_COLUMN: pa.array(range(len(tasks)), pa.int64()), PANDAS_INDEX_COLUMN: list(tasks)},
        schema=schema,
    )


def rows_to_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A table from row dicts that share their keys (column order = first row's key order)."""
    columns = list(rows[0])
    return pa.table({c: [r[c] for r in rows] for c in columns})
