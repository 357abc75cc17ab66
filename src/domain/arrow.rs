//! Arrow IPC stream bodies (`application/vnd.apache.arrow.stream`): a schema message, then record
//! batches, decoded one record batch at a time into the same columns as NDJSON and CSV (see
//! [`super::rows`]); each record batch is dropped once its values are copied, so memory grows with
//! the batch's numbers, not with the stream.
//!
//! Columns (by field name; the same ones as an NDJSON row):
//! - `label`, `prediction`: integers (class indices), strings or dictionary-encoded strings (class
//!   names), floats (regression predictions); multilabel rows as a list (or fixed-size list) of
//!   label names, or an indicator row of 0/1 integers or booleans;
//! - `probabilities`, `scores`, `x`, `y`: fixed-size lists (or lists of equal length) of float32 or
//!   float64 (integers are accepted too);
//! - `target`, `weight`: floats or integers.
//!
//! Nulls are refused (with the row and column). Task, classes, estimators and metadata come from the
//! query, as for NDJSON. Validation happens afterwards, in [`BatchRequest::validate`]; its pointers
//! translate to rows and columns with the [`ColumnMap`] returned here.

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType};

use super::batch::{BatchRequest, Task};
use super::columns::Label;
use super::rows::{column_error, row_error, Builder, ColumnMap, RowOptions, RowsError};
use crate::error::FieldError;

/// The columns an Arrow body may have.
const COLUMNS: &str =
    "label, prediction, probabilities, scores, x, y, target, weight, id, segment_<key>";

/// What a body column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Label,
    Prediction,
    Target,
    Weight,
    Probabilities,
    Scores,
    X,
    Y,
    /// Sample ids (strings or integers).
    Id,
    /// A categorical segment column `segment_<key>` (strings, dictionary-encoded strings or
    /// integers).
    Segment,
}

impl Role {
    fn of(name: &str) -> Option<Role> {
        Some(match name {
            "label" => Role::Label,
            "prediction" => Role::Prediction,
            "target" => Role::Target,
            "weight" => Role::Weight,
            "probabilities" => Role::Probabilities,
            "scores" => Role::Scores,
            "x" => Role::X,
            "y" => Role::Y,
            "id" => Role::Id,
            n if n.starts_with("segment_") && n.len() > 8 => Role::Segment,
            _ => return None,
        })
    }
}

fn is_number(t: &DataType) -> bool {
    // float16 holds three significant digits: probabilities lose their sum to 1 and labels
    // their identity. Cast to float32 first.
    (t.is_floating() && *t != DataType::Float16) || t.is_integer()
}

fn is_name(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(k, v) => k.is_integer() && is_name(v),
        _ => false,
    }
}

/// A label column's type. A boolean is no label (which class would `true` be?), but a list of
/// booleans is a multilabel indicator row.
fn is_scalar_label(t: &DataType) -> bool {
    is_number(t) || is_name(t)
}

/// The child type of a list-like type, if it is one.
fn list_child(t: &DataType) -> Option<&DataType> {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Some(f.data_type())
        }
        _ => None,
    }
}

/// Why a column's type does not fit its role (`None`: it fits).
fn type_problem(role: Role, t: &DataType) -> Option<String> {
    let ok = match role {
        Role::Label | Role::Prediction => {
            is_scalar_label(t)
                || list_child(t).is_some_and(|c| is_scalar_label(c) || *c == DataType::Boolean)
        }
        Role::Target | Role::Weight => is_number(t),
        Role::Id | Role::Segment => t.is_integer() || is_name(t),
        Role::Probabilities | Role::Scores | Role::X | Role::Y => {
            list_child(t).is_some_and(is_number)
        }
    };
    if ok {
        return None;
    }
    let expected = match role {
        Role::Label | Role::Prediction => {
            "integers, strings or dictionary-encoded strings (multilabel: a list of them, or of booleans, per row)"
        }
        Role::Target | Role::Weight => "float32, float64 or integers (not float16: cast it)",
        Role::Id | Role::Segment => "strings, dictionary-encoded strings or integers",
        _ => "a fixed-size list of float32 or float64 per row (not float16: cast it)",
    };
    Some(format!("has Arrow type {t}; expected {expected}"))
}

/// Decode an Arrow IPC stream body. A malformed stream is [`RowsError::Malformed`] (a 400);
/// the decoder's own panics (a malformed stream the library did not anticipate) are caught and
/// answered the same way.
///
/// `body_bytes`, the body's declared size when it is not compressed, sizes the columns once (a
/// fixed-width row's bytes divide it), so they do not grow by doubling and copying.
pub fn decode_arrow<R: Read>(
    reader: R,
    options: RowOptions,
    body_bytes: Option<u64>,
) -> Result<(BatchRequest, ColumnMap), RowsError> {
    quiet_panics();
    QUIET.with(|q| q.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| decode(reader, options, body_bytes)));
    QUIET.with(|q| q.set(false));
    match r {
        Ok(r) => r,
        Err(_) => Err(RowsError::Malformed(
            "the body is not a valid Arrow IPC stream".into(),
        )),
    }
}

std::thread_local! {
    /// Set while the decoder runs under `catch_unwind` on this thread.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic the decoder's guard catches is an answer (400), not a crash: it is logged as one
/// line, without the backtrace the default hook prints for every panic (one per hostile
/// request would flood the log). Other panics go to the previous hook as before.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| q.get()) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let what = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::warn!(%at, %what, "the Arrow reader panicked on a malformed body; answered 400");
            } else {
                previous(info);
            }
        }));
    });
}

/// An Arrow error: reading the body (size limit, connection, decompression) stays an I/O error,
/// anything else is a malformed stream.
fn stream_failure(e: ArrowError) -> RowsError {
    match e {
        ArrowError::IoError(_, io) => RowsError::Io(io),
        ArrowError::ExternalError(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => RowsError::Io(*io),
            Err(other) => {
                RowsError::Malformed(format!("the body is not a valid Arrow IPC stream: {other}"))
            }
        },
        other => RowsError::Malformed(format!("the body is not a valid Arrow IPC stream: {other}")),
    }
}

fn decode<R: Read>(
    reader: R,
    options: RowOptions,
    body_bytes: Option<u64>,
) -> Result<(BatchRequest, ColumnMap), RowsError> {
    let reader = std::io::BufReader::with_capacity(256 * 1024, reader);
    let stream = arrow_ipc::reader::StreamReader::try_new(reader, None).map_err(stream_failure)?;
    let schema = stream.schema();
    let (roles, task) = roles_and_task(&schema, &options)?;
    let mut b = Builder::new();
    if let Some(bytes) = body_bytes {
        presize(&mut b, &schema, &roles, bytes);
    }
    let mut stream = stream;
    append_all(&mut b, stream.by_ref(), &roles, task, stream_failure)?;
    // The stream ends at its end-of-stream marker (or at the end of the body): anything after
    // it is not part of the batch, and a body that carries it is refused, not half-read.
    if stream.is_finished() {
        let mut one = [0u8; 1];
        match stream.get_mut().read(&mut one) {
            Ok(0) => {}
            Ok(_) => {
                return Err(RowsError::Malformed(
                    "the body has bytes after the end of the Arrow IPC stream".into(),
                ))
            }
            Err(e) => return Err(RowsError::Io(e)),
        }
    }
    let mut options = options;
    options.task = Some(task);
    b.finish(options).map(|r| (r, ColumnMap::default()))
}

/// Each column's role by its name, and the task (given, or from the columns); every unknown
/// column and every column of the wrong type is an error naming it.
fn roles_and_task(
    schema: &arrow_schema::Schema,
    options: &RowOptions,
) -> Result<(Vec<Option<Role>>, Task), RowsError> {
    let mut errors = Vec::new();
    let mut roles = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        let name = f.name();
        if schema.fields()[..i].iter().any(|g| g.name() == name) {
            errors.push(column_error(name, "appears twice in the schema"));
        }
        let role = Role::of(name);
        match role {
            None => errors.push(column_error(
                name,
                format!("unknown column; expected {COLUMNS}"),
            )),
            Some(role) => {
                if let Some(problem) = type_problem(role, f.data_type()) {
                    errors.push(column_error(name, problem));
                }
            }
        }
        roles.push(role);
    }
    if !errors.is_empty() {
        return Err(RowsError::Invalid(errors));
    }
    let has = |r: Role| roles.contains(&Some(r));
    let task = options.task.unwrap_or(if has(Role::Y) {
        Task::Pairs
    } else if has(Role::Target) {
        Task::Regression
    } else if has(Role::Scores) {
        Task::Multilabel
    } else {
        Task::Multiclass
    });
    Ok((roles, task))
}

/// Copy record batches into the columns until the batches end or the row cap is reached.
fn append_all<E>(
    b: &mut Builder,
    batches: impl Iterator<Item = Result<RecordBatch, E>>,
    roles: &[Option<Role>],
    task: Task,
    failure: impl Fn(E) -> RowsError,
) -> Result<(), RowsError> {
    for batch in batches {
        let batch = batch.map_err(&failure)?;
        append(b, &batch, roles, task);
        b.rows += batch.num_rows();
        if b.full() {
            break;
        }
    }
    Ok(())
}

/// Decode a Parquet file with the same columns as an Arrow body (`label`, `probabilities` as a
/// list per row, `x`, `y`, …), one row group at a time. A file the reader cannot read is
/// [`RowsError::Malformed`]; the reader's own panics are caught and answered the same way.
pub fn decode_parquet(
    file: bytes::Bytes,
    options: RowOptions,
) -> Result<(BatchRequest, ColumnMap), RowsError> {
    quiet_panics();
    QUIET.with(|q| q.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| parquet_columns(file, options)));
    QUIET.with(|q| q.set(false));
    match r {
        Ok(r) => r,
        Err(_) => Err(RowsError::Malformed("the file is not valid Parquet".into())),
    }
}

fn parquet_columns(
    file: bytes::Bytes,
    options: RowOptions,
) -> Result<(BatchRequest, ColumnMap), RowsError> {
    let malformed = |e: &dyn std::fmt::Display| {
        RowsError::Malformed(format!("the file is not valid Parquet: {e}"))
    };
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| malformed(&e))?;
    let schema = builder.schema().clone();
    let (roles, task) = roles_and_task(&schema, &options)?;
    let reader = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| malformed(&e))?;
    let mut b = Builder::new();
    append_all(&mut b, reader, &roles, task, |e| malformed(&e))?;
    let mut options = options;
    options.task = Some(task);
    b.finish(options).map(|r| (r, ColumnMap::default()))
}

/// The bytes one value of a fixed-width type takes in the stream (0 when not fixed).
fn fixed_width(t: &DataType) -> usize {
    match t {
        DataType::Dictionary(k, _) => fixed_width(k),
        DataType::FixedSizeList(f, n) => fixed_width(f.data_type()) * (*n).max(0) as usize,
        t => t.primitive_width().unwrap_or(0),
    }
}

/// Reserve the columns for as many rows as a body of `bytes` can hold: at most `bytes` divided
/// by the fixed-width bytes of one row. A refused reservation is not an error (the columns then
/// grow as rows arrive).
fn presize(b: &mut Builder, schema: &arrow_schema::Schema, roles: &[Option<Role>], bytes: u64) {
    let per_row: usize = schema
        .fields()
        .iter()
        .map(|f| fixed_width(f.data_type()))
        .sum();
    if per_row == 0 {
        return;
    }
    let rows = usize::try_from(bytes).unwrap_or(usize::MAX) / per_row;
    for (f, role) in schema.fields().iter().zip(roles) {
        let width = match f.data_type() {
            DataType::FixedSizeList(_, n) => (*n).max(0) as usize,
            _ => 1,
        };
        let reserved = match role {
            Some(Role::Label) => b.labels.columnar().try_reserve_exact(rows).is_ok(),
            Some(Role::Prediction) => b.predictions.columnar().try_reserve_exact(rows).is_ok(),
            Some(Role::Target) => b.targets.columnar().try_reserve_exact(rows).is_ok(),
            Some(Role::Weight) => b.weights.columnar().try_reserve_exact(rows).is_ok(),
            Some(Role::Id | Role::Segment) => true,
            Some(role @ (Role::Probabilities | Role::Scores | Role::X | Role::Y)) => {
                if !matches!(f.data_type(), DataType::FixedSizeList(..)) {
                    continue;
                }
                let col = match role {
                    Role::Probabilities => &mut b.probabilities,
                    Role::Scores => &mut b.scores,
                    Role::X => &mut b.x,
                    _ => &mut b.y,
                };
                col.columnar(width)
                    .map(|d| d.try_reserve_exact(rows.saturating_mul(width)).is_ok())
                    .unwrap_or(false)
            }
            None => true,
        };
        if !reserved {
            return;
        }
    }
}

/// Copy one record batch's columns into the builder.
fn append(b: &mut Builder, batch: &RecordBatch, roles: &[Option<Role>], task: Task) {
    let row0 = b.rows as u64;
    let fields = batch.schema();
    for ((column, role), field) in batch.columns().iter().zip(roles).zip(fields.fields()) {
        let Some(role) = role else { continue };
        let name = field.name().as_str();
        if let Some((row, count)) = first_null(column.as_ref()) {
            b.errors.push(null_error(row0 + row as u64, name, count));
            continue;
        }
        let problem = match role {
            Role::Label => labels(column.as_ref(), b.labels.columnar(), false),
            Role::Prediction => labels(
                column.as_ref(),
                b.predictions.columnar(),
                task == Task::Regression,
            ),
            Role::Target => numbers(column.as_ref(), b.targets.columnar()),
            Role::Weight => numbers(column.as_ref(), b.weights.columnar()),
            Role::Probabilities => matrix(column, &mut b.probabilities, row0, name, &mut b.errors),
            Role::Scores => matrix(column, &mut b.scores, row0, name, &mut b.errors),
            Role::X => matrix(column, &mut b.x, row0, name, &mut b.errors),
            Role::Y => matrix(column, &mut b.y, row0, name, &mut b.errors),
            Role::Id => texts(column.as_ref(), b.ids.columnar()),
            Role::Segment => texts(column.as_ref(), b.segments.columnar(&name[8..])),
        };
        if let Some(p) = problem {
            b.errors.push(column_error(name, p));
        }
    }
}

/// Append a string (or integer) column as text: ids and segment values.
fn texts(a: &dyn Array, out: &mut Vec<String>) -> Option<String> {
    let mut cells = Vec::with_capacity(a.len());
    if let Some(p) = labels(a, &mut cells, false) {
        return Some(p);
    }
    out.extend(cells.into_iter().map(|l| match l {
        Label::Name(s) => s,
        Label::Index(i) => i.to_string(),
        Label::Number(x) => x.to_string(),
        Label::Row(_) => String::new(),
    }));
    None
}

fn null_error(row: u64, column: &str, count: usize) -> FieldError {
    let more = match count {
        0 | 1 => String::new(),
        n => format!(" ({} more null rows in this record batch)", n - 1),
    };
    row_error(row, Some(column), format!("is null{more}"))
}

/// The first null row of an array, and how many rows are null.
fn first_null(a: &dyn Array) -> Option<(usize, usize)> {
    let nulls = a.logical_nulls()?;
    let count = nulls.null_count();
    if count == 0 {
        return None;
    }
    nulls.iter().position(|valid| !valid).map(|i| (i, count))
}

/// Append a numeric column as f64 (`Some(problem)` when it is not numeric).
fn numbers(a: &dyn Array, out: &mut Vec<f64>) -> Option<String> {
    macro_rules! ext {
        ($t:ty) => {
            out.extend(a.as_primitive::<$t>().values().iter().map(|&v| v as f64))
        };
    }
    match a.data_type() {
        DataType::Float64 => out.extend_from_slice(a.as_primitive::<Float64Type>().values()),
        DataType::Float32 => ext!(Float32Type),
        DataType::Float16 => out.extend(
            a.as_primitive::<Float16Type>()
                .values()
                .iter()
                .map(|&v| f64::from(v)),
        ),
        DataType::Int8 => ext!(Int8Type),
        DataType::Int16 => ext!(Int16Type),
        DataType::Int32 => ext!(Int32Type),
        DataType::Int64 => ext!(Int64Type),
        DataType::UInt8 => ext!(UInt8Type),
        DataType::UInt16 => ext!(UInt16Type),
        DataType::UInt32 => ext!(UInt32Type),
        DataType::UInt64 => ext!(UInt64Type),
        t => return Some(format!("has Arrow type {t}; expected numbers")),
    }
    None
}

/// An integer value as a label: a class index, or a number validation will refuse.
fn index_label(v: i128) -> Label {
    i64::try_from(v).map_or(Label::Number(v as f64), Label::Index)
}

/// Append a label column (`Some(problem)` when its type cannot hold labels).
fn labels(a: &dyn Array, out: &mut Vec<Label>, numbers_only: bool) -> Option<String> {
    out.reserve(a.len());
    macro_rules! ints {
        ($t:ty) => {
            out.extend(a.as_primitive::<$t>().values().iter().map(|&v| {
                if numbers_only {
                    Label::Number(v as f64)
                } else {
                    index_label(v as i128)
                }
            }))
        };
    }
    match a.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let mut v = Vec::with_capacity(a.len());
            numbers(a, &mut v);
            out.extend(v.into_iter().map(Label::Number));
        }
        DataType::Boolean => out.extend(
            a.as_boolean()
                .values()
                .iter()
                .map(|v| Label::Index(i64::from(v))),
        ),
        DataType::Utf8 => out.extend(
            a.as_string::<i32>()
                .iter()
                .map(|s| Label::Name(s.unwrap_or_default().to_string())),
        ),
        DataType::LargeUtf8 => out.extend(
            a.as_string::<i64>()
                .iter()
                .map(|s| Label::Name(s.unwrap_or_default().to_string())),
        ),
        DataType::Utf8View => out.extend(
            a.as_string_view()
                .iter()
                .map(|s| Label::Name(s.unwrap_or_default().to_string())),
        ),
        DataType::Dictionary(..) => {
            let Some(d) = a.as_any_dictionary_opt() else {
                return Some("is a dictionary that cannot be read".into());
            };
            // The distinct names once, then one clone per row.
            let mut names = Vec::with_capacity(d.values().len());
            if let Some(p) = labels(d.values().as_ref(), &mut names, false) {
                return Some(p);
            }
            for k in d.normalized_keys() {
                match names.get(k) {
                    Some(l) => out.push(l.clone()),
                    None => return Some("has a dictionary key outside its dictionary".into()),
                }
            }
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            for i in 0..a.len() {
                let (child, start, len) = list_row(a, i);
                let values = child.slice(start, len);
                if first_null(values.as_ref()).is_some() {
                    return Some("holds a null inside a list".into());
                }
                let mut row = Vec::with_capacity(len);
                if let Some(p) = labels(values.as_ref(), &mut row, numbers_only) {
                    return Some(p);
                }
                out.push(Label::Row(row));
            }
        }
        t => return Some(format!("has Arrow type {t}; expected integers or strings")),
    }
    None
}

/// Row `i` of a list-like array: its child array, and the start and length of the row in it.
fn list_row(a: &dyn Array, i: usize) -> (&ArrayRef, usize, usize) {
    match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let o = l.value_offsets();
            (l.values(), o[i] as usize, (o[i + 1] - o[i]) as usize)
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            let o = l.value_offsets();
            (l.values(), o[i] as usize, (o[i + 1] - o[i]) as usize)
        }
        _ => {
            let l = a.as_fixed_size_list();
            let w = l.value_length() as usize;
            (l.values(), l.value_offset_at(i), w)
        }
    }
}

/// Append a matrix column: one list of numbers per row, all rows as wide as the first.
fn matrix(
    a: &ArrayRef,
    col: &mut super::rows::MatrixColumn,
    row0: u64,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let n = a.len();
    if n == 0 {
        return None;
    }
    // Rows of a fixed-size list are contiguous in its child; lists are checked row by row.
    let (child, start, width) = list_row(a.as_ref(), 0);
    let (start, total) = match a.data_type() {
        DataType::FixedSizeList(..) => (start, width * n),
        _ => {
            for i in 1..n {
                let (_, s, w) = list_row(a.as_ref(), i);
                if w != width || s != start + i * width {
                    errors.push(row_error(
                        row0 + i as u64,
                        Some(name),
                        format!("has {w} values but the first row has {width}"),
                    ));
                    return None;
                }
            }
            (start, width * n)
        }
    };
    let values = child.slice(start, total);
    if let Some((j, count)) = first_null(values.as_ref()) {
        let row = j.checked_div(width).unwrap_or(0);
        errors.push(row_error(
            row0 + row as u64,
            Some(name),
            format!("holds a null value ({count} in this record batch)"),
        ));
        return None;
    }
    let data = match col.columnar(width) {
        Ok(data) => data,
        Err(first) => {
            errors.push(row_error(
                row0,
                Some(name),
                format!("has {width} values but the first row has {first}"),
            ));
            return None;
        }
    };
    data.reserve(total);
    numbers(values.as_ref(), data)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder};
    use arrow_array::{DictionaryArray, Float64Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::batch::BatchData;

    /// An Arrow IPC stream of these columns, cut into record batches of `chunk` rows.
    fn stream(columns: Vec<(&str, ArrayRef)>, chunk: usize) -> Vec<u8> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), a.null_count() > 0))
                .collect::<Vec<_>>(),
        ));
        let n = columns[0].1.len();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema).unwrap();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let cols = columns.iter().map(|(_, a)| a.slice(start, len)).collect();
            w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap())
                .unwrap();
            start += len;
        }
        w.into_inner().unwrap()
    }

    fn probs_f32(rows: &[[f32; 3]]) -> ArrayRef {
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), 3);
        for r in rows {
            b.values().append_slice(r);
            b.append(true);
        }
        Arc::new(b.finish())
    }

    fn decoded(body: &[u8], options: RowOptions) -> Result<BatchRequest, RowsError> {
        decode_arrow(body, options, Some(body.len() as u64)).map(|(r, _)| r)
    }

    fn invalid(r: Result<BatchRequest, RowsError>) -> Vec<FieldError> {
        match r {
            Err(RowsError::Invalid(e)) => e,
            Err(RowsError::Malformed(m)) => panic!("malformed: {m}"),
            Err(RowsError::Io(e)) => panic!("io: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    const ROWS: [[f32; 3]; 5] = [
        [0.7, 0.2, 0.1],
        [0.1, 0.3, 0.6],
        [0.2, 0.5, 0.3],
        [0.6, 0.3, 0.1],
        [0.25, 0.5, 0.25],
    ];

    /// Float32 probabilities and int64 labels over several record batches: the same columns as
    /// the rows, each value widened exactly (f64::from(f32)).
    #[test]
    fn record_batches_concatenate_into_the_columns() {
        let labels: ArrayRef = Arc::new(Int64Array::from(vec![0, 2, 1, 0, 1]));
        let body = stream(
            vec![("label", labels), ("probabilities", probs_f32(&ROWS))],
            2,
        );
        let req = decoded(&body, RowOptions::default()).unwrap();
        assert_eq!(req.task, Some(Task::Multiclass));
        let labels: Vec<Label> = [0, 2, 1, 0, 1].into_iter().map(Label::Index).collect();
        assert_eq!(req.labels.as_deref(), Some(&labels[..]));
        let p = req.probabilities.clone().unwrap();
        assert_eq!((p.rows, p.cols), (5, 3));
        let expected: Vec<f64> = ROWS.iter().flatten().map(|&v| f64::from(v)).collect();
        assert_eq!(p.data, expected);
        let valid = req.validate().unwrap();
        let BatchData::Multiclass { labels, .. } = &valid.batch.data else {
            panic!("multiclass")
        };
        assert_eq!(labels, &vec![0, 2, 1, 0, 1]);
    }

    /// Types the document does not name are refused with the column: a boolean label (which
    /// class would `true` be?) and float16 probabilities; a list of booleans is an indicator
    /// row. Bytes after the end of the stream refuse the body.
    #[test]
    fn booleans_float16_and_trailing_bytes_are_refused() {
        let probs: ArrayRef = probs_f32(&ROWS);
        let flags: ArrayRef = Arc::new(arrow_array::BooleanArray::from(vec![
            true, false, true, false, true,
        ]));
        let e = invalid(decoded(
            &stream(vec![("label", flags), ("probabilities", probs.clone())], 5),
            RowOptions::default(),
        ));
        assert_eq!(e[0].column.as_deref(), Some("label"), "{e:?}");
        let mut b = FixedSizeListBuilder::new(arrow_array::builder::Float16Builder::new(), 3);
        for r in ROWS {
            for v in r {
                b.values().append_value(half::f16::from_f32(v));
            }
            b.append(true);
        }
        let f16: ArrayRef = Arc::new(b.finish());
        let labels: ArrayRef = Arc::new(Int64Array::from(vec![0, 2, 1, 0, 1]));
        let e = invalid(decoded(
            &stream(vec![("label", labels.clone()), ("probabilities", f16)], 5),
            RowOptions::default(),
        ));
        assert_eq!(e[0].column.as_deref(), Some("probabilities"), "{e:?}");
        assert!(e[0].message.contains("float16"), "{e:?}");
        let mut body = stream(vec![("label", labels), ("probabilities", probs)], 5);
        assert!(decoded(&body, RowOptions::default()).is_ok());
        body.extend_from_slice(b"{\"task\": \"multiclass\"}");
        match decoded(&body, RowOptions::default()) {
            Err(RowsError::Malformed(m)) => assert!(m.contains("after the end"), "{m}"),
            other => panic!("trailing bytes accepted: {:?}", other.map(|_| ())),
        }
    }

    /// Dictionary-encoded class names read as names (the classes from the query order them).
    #[test]
    fn dictionary_labels_are_names() {
        let names: DictionaryArray<arrow_array::types::Int32Type> =
            vec!["cat", "bird", "dog", "cat", "dog"]
                .into_iter()
                .collect();
        let preds: ArrayRef = Arc::new(StringArray::from(vec!["cat", "bird", "cat", "cat", "dog"]));
        let body = stream(vec![("label", Arc::new(names)), ("prediction", preds)], 3);
        let options = RowOptions {
            classes: Some(vec!["cat".into(), "dog".into(), "bird".into()]),
            ..RowOptions::default()
        };
        let req = decoded(&body, options).unwrap();
        let name = |s: &str| Label::Name(s.into());
        assert_eq!(
            req.labels.unwrap(),
            vec![
                name("cat"),
                name("bird"),
                name("dog"),
                name("cat"),
                name("dog")
            ]
        );
        assert_eq!(req.predictions.unwrap()[1], name("bird"));
    }

    /// Multilabel rows as lists of names; the task follows from the `scores` column.
    #[test]
    fn multilabel_lists() {
        let mut lb = ListBuilder::new(StringBuilder::new());
        for row in [vec!["a"], vec![], vec!["a", "b"]] {
            for v in row {
                lb.values().append_value(v);
            }
            lb.append(true);
        }
        let mut sb = FixedSizeListBuilder::new(Float32Builder::new(), 2);
        for r in [[0.9f32, 0.1], [0.2, 0.3], [0.8, 0.7]] {
            sb.values().append_slice(&r);
            sb.append(true);
        }
        let body = stream(
            vec![
                ("label", Arc::new(lb.finish())),
                ("scores", Arc::new(sb.finish())),
            ],
            2,
        );
        let req = decoded(&body, RowOptions::default()).unwrap();
        assert_eq!(req.task, Some(Task::Multilabel));
        assert_eq!(
            req.labels.unwrap()[2],
            Label::Row(vec![Label::Name("a".into()), Label::Name("b".into())])
        );
        assert_eq!(req.scores.unwrap().cols, 2);
    }

    /// A null names its row, counted across record batches, and its column.
    #[test]
    fn nulls_name_row_and_column() {
        let labels: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(0),
            Some(2),
            Some(1),
            None,
            Some(1),
        ]));
        let body = stream(
            vec![("label", labels), ("probabilities", probs_f32(&ROWS))],
            2,
        );
        let errors = invalid(decoded(&body, RowOptions::default()));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].row, Some(3));
        assert_eq!(errors[0].column.as_deref(), Some("label"));
        assert!(errors[0].message.starts_with("is null"), "{errors:?}");
    }

    /// Unknown columns and columns of the wrong type are refused before any row is read.
    #[test]
    fn schema_errors_name_the_column() {
        let labels: ArrayRef = Arc::new(Int64Array::from(vec![0, 1]));
        let bad: ArrayRef = Arc::new(Float64Array::from(vec![0.5, 0.5]));
        let ids: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let body = stream(
            vec![("label", labels), ("probabilities", bad), ("sample", ids)],
            2,
        );
        let errors = invalid(decoded(&body, RowOptions::default()));
        let by_column = |c: &str| {
            errors
                .iter()
                .find(|e| e.column.as_deref() == Some(c))
                .unwrap_or_else(|| panic!("no error for {c}: {errors:?}"))
                .message
                .clone()
        };
        assert!(by_column("probabilities").contains("Float64"), "{errors:?}");
        assert!(
            by_column("sample").starts_with("unknown column"),
            "{errors:?}"
        );
    }

    /// Lists of unequal length name the first row that differs.
    #[test]
    fn ragged_lists_name_the_row() {
        let mut xb = ListBuilder::new(arrow_array::builder::Float64Builder::new());
        for r in [vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0]] {
            xb.values().append_slice(&r);
            xb.append(true);
        }
        let mut yb = ListBuilder::new(arrow_array::builder::Float64Builder::new());
        for r in [vec![1.0], vec![3.0], vec![5.0]] {
            yb.values().append_slice(&r);
            yb.append(true);
        }
        let body = stream(
            vec![("x", Arc::new(xb.finish())), ("y", Arc::new(yb.finish()))],
            3,
        );
        let errors = invalid(decoded(&body, RowOptions::default()));
        assert_eq!(errors[0].row, Some(2), "{errors:?}");
        assert_eq!(errors[0].column.as_deref(), Some("x"));
    }

    /// Bytes that are not an Arrow stream are a malformed body, not a row error.
    #[test]
    fn not_a_stream_is_malformed() {
        for body in [&b""[..], b"{\"task\": \"multiclass\"}", &[0xff; 64]] {
            match decoded(body, RowOptions::default()) {
                Err(RowsError::Malformed(_)) | Err(RowsError::Io(_)) => {}
                Err(RowsError::Invalid(e)) => panic!("{e:?}"),
                Ok(_) => panic!("accepted {body:?}"),
            }
        }
    }

    /// Every single-byte damage of a valid stream is answered: where the Arrow reader itself
    /// panics (it slices buffers at offsets read from the damaged message), the guard turns the
    /// panic into a malformed body.
    #[test]
    fn reader_panics_become_malformed_bodies() {
        let body = damaged_base();
        let mut caught = 0;
        for i in 0..body.len() {
            for v in [0x00, 0x7f, 0xff] {
                let mut b = body.clone();
                b[i] = v;
                let raw = catch_unwind(AssertUnwindSafe(|| {
                    decode(&b[..], RowOptions::default(), None).is_ok()
                }));
                let guarded = decode_arrow(&b[..], RowOptions::default(), Some(b.len() as u64));
                if raw.is_err() {
                    caught += 1;
                    assert!(
                        matches!(guarded, Err(RowsError::Malformed(_))),
                        "byte {i} = {v}"
                    );
                }
            }
        }
        eprintln!(
            "{caught} of {} damaged streams made the reader panic",
            body.len() * 3
        );
    }

    fn damaged_base() -> Vec<u8> {
        let labels: ArrayRef = Arc::new(Int64Array::from(vec![0, 2, 1, 0, 1]));
        let names: DictionaryArray<arrow_array::types::Int8Type> =
            vec!["a", "b", "a", "c", "b"].into_iter().collect();
        stream(
            vec![
                ("label", labels),
                ("prediction", Arc::new(names)),
                ("probabilities", probs_f32(&ROWS)),
            ],
            2,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Damaged streams (bytes overwritten, or cut short) are answered, never a panic, and a
        /// stream that still decodes validates without one.
        #[test]
        fn damaged_streams_never_panic(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut body = damaged_base();
            for (i, v) in edits {
                let i = i.index(body.len());
                body[i] = v;
            }
            if truncate {
                body.truncate(cut.index(body.len()));
            }
            if let Ok((req, _)) = decode_arrow(&body[..], RowOptions::default(), Some(body.len() as u64)) {
                let _ = req.validate();
            }
        }
    }
}
