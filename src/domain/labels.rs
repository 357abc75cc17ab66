//! Labels that arrive after their predictions: the request (`{ids, labels}` as JSON, NDJSON
//! lines `{"id", "label"}`, or CSV `id,label`), and the canonical text form a label is stored in
//! against its batch's classes (multiclass: the class index, `"3"`; multilabel: the sorted
//! indices of the labels present, `"0,4"`, `""` for none).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read};

use serde::Deserialize;
use utoipa::ToSchema;

use super::batch::{class_of, Batch, BatchData, Task};
use super::columns::Label;
use super::errors::Errors;
use super::rows::{column_error, row_error, RowsError};
use super::segments::{valid_id, UNLABELLED};
use crate::error::FieldError;

/// Most labels one request may carry.
pub const MAX_LABELS: usize = 5_000_000;

/// `POST /v1/models/{model}/labels` (JSON form).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": ["req-1", "req-2"], "labels": ["cat", 2]}))]
pub struct LabelsRequest {
    /// Sample ids given at upload.
    #[serde(deserialize_with = "capped")]
    pub ids: Vec<String>,
    /// One label per id, in the form of the batch's `labels` (multiclass: class index or name;
    /// multilabel: an indicator row or a list of label names).
    #[schema(value_type = Vec<Object>)]
    #[serde(deserialize_with = "capped")]
    pub labels: Vec<Label>,
}

/// A list of at most [`MAX_LABELS`] items: reading stops at the next one, so a huge body is
/// refused without being held.
fn capped<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Capped<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Capped<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_LABELS} items")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(v) = seq.next_element()? {
                if out.len() >= MAX_LABELS {
                    return Err(serde::de::Error::custom(format!(
                        "at most {MAX_LABELS} labels per request"
                    )));
                }
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Capped(std::marker::PhantomData))
}

impl LabelsRequest {
    /// Check lengths and ids (every problem with its pointer).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Errors::default();
        if self.ids.is_empty() {
            e.push("/ids", "must name at least one sample");
        }
        if self.ids.len() > MAX_LABELS {
            e.push("/ids", format!("at most {MAX_LABELS} labels per request"));
        }
        if self.labels.len() != self.ids.len() {
            e.push(
                "/labels",
                format!(
                    "has {} entries but ids has {}",
                    self.labels.len(),
                    self.ids.len()
                ),
            );
        }
        let mut seen = HashSet::with_capacity(self.ids.len());
        for (i, id) in self.ids.iter().enumerate() {
            if !valid_id(id) {
                e.push(
                    format!("/ids/{i}"),
                    "a sample id has 1 to 128 characters and no control characters",
                );
            } else if !seen.insert(id.as_str()) {
                e.push(
                    format!("/ids/{i}"),
                    format!("sample id {id:?} appears twice in this request"),
                );
            }
            if e.full() {
                break;
            }
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(e.0)
        }
    }
}

/// What a stored sample's label must be resolved against: its batch's task and classes.
pub struct LabelSpace<'a> {
    pub task: Task,
    pub classes: &'a [String],
    pub index: HashMap<&'a str, u32>,
}

impl<'a> LabelSpace<'a> {
    pub fn new(task: Task, classes: &'a [String]) -> Self {
        let index = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        LabelSpace {
            task,
            classes,
            index,
        }
    }

    /// The canonical text of a label, or why it is not a label of this batch.
    pub fn canonical(&self, l: &Label) -> Result<String, String> {
        let k = self.classes.len();
        match self.task {
            Task::Multiclass => class_of(l, k, &self.index).map(|(c, _)| c.to_string()),
            Task::Multilabel => {
                let l = &as_multilabel(l);
                let Label::Row(row) = l else {
                    return Err(
                        "must be an indicator row like [0,1,0] or a list of label names".into(),
                    );
                };
                let mut present = Vec::new();
                let names = row.iter().any(|v| matches!(v, Label::Name(_)));
                if names {
                    for v in row {
                        match v {
                            Label::Name(s) => match self.index.get(s.as_str()) {
                                Some(&c) => present.push(c),
                                None => return Err(format!("{s:?} is not one of the {k} labels")),
                            },
                            _ => {
                                return Err(
                                    "mixes label names with numbers; use names or an indicator row"
                                        .into(),
                                )
                            }
                        }
                    }
                } else if !row.is_empty() {
                    if row.len() != k {
                        return Err(format!(
                            "indicator row has {} values but there are {k} labels",
                            row.len()
                        ));
                    }
                    for (j, v) in row.iter().enumerate() {
                        match v {
                            Label::Index(0) => {}
                            Label::Index(1) => present.push(j as u32),
                            Label::Number(x) if *x == 0.0 => {}
                            Label::Number(x) if *x == 1.0 => present.push(j as u32),
                            _ => return Err("indicator must be 0 or 1".into()),
                        }
                    }
                }
                present.sort_unstable();
                present.dedup();
                Ok(present
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","))
            }
            t => Err(format!("a {} batch has no labels", t.as_str())),
        }
    }

    /// The label as a user reads it (class names), for messages.
    pub fn describe(&self, canonical: &str) -> String {
        let name = |s: &str| {
            s.parse::<usize>()
                .ok()
                .and_then(|i| self.classes.get(i))
                .map_or_else(|| s.to_string(), |c| format!("{c:?}"))
        };
        match self.task {
            Task::Multilabel => format!(
                "[{}]",
                canonical
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => name(canonical),
        }
    }
}

impl Batch {
    /// Sample `i`'s label in canonical text form (`None` when it has not arrived).
    pub fn label_text(&self, i: usize) -> Option<String> {
        match &self.data {
            BatchData::Multiclass { labels, .. } if labels[i] != UNLABELLED => {
                Some(labels[i].to_string())
            }
            BatchData::Multilabel { labels, .. } if !labels.row(i)[0].is_nan() => Some(
                labels
                    .row(i)
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v == 1.0)
                    .map(|(j, _)| j.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        }
    }

    /// Fill sample `i`'s label from its canonical text form.
    pub fn set_label_text(&mut self, i: usize, text: &str) -> anyhow::Result<()> {
        let k = self.classes.len();
        match &mut self.data {
            BatchData::Multiclass { labels, .. } => {
                let c: u32 = text.parse()?;
                anyhow::ensure!((c as usize) < k, "stored label {c} is outside the classes");
                labels[i] = c;
            }
            BatchData::Multilabel { labels, .. } => {
                let row = &mut labels.data[i * k..(i + 1) * k];
                row.fill(0.0);
                for part in text.split(',').filter(|s| !s.is_empty()) {
                    let j: usize = part.parse()?;
                    anyhow::ensure!(j < k, "stored label {j} is outside the labels");
                    row[j] = 1.0;
                }
            }
            _ => anyhow::bail!("this batch has no labels"),
        }
        Ok(())
    }
}

/// One NDJSON line of a labels body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelLine {
    id: String,
    label: Label,
}

/// The error of a body with more than [`MAX_LABELS`] labels (decoding stops there).
fn too_many() -> RowsError {
    RowsError::Invalid(vec![FieldError::at(
        "/ids",
        format!("at most {MAX_LABELS} labels per request"),
    )])
}

/// Decode an NDJSON labels body as it is read: one `{"id": …, "label": …}` per line (blank lines
/// skipped). A read error is [`RowsError::Io`]; more than [`MAX_LABELS`] lines stop the decoding.
pub fn decode_ndjson<R: BufRead>(mut reader: R) -> Result<LabelsRequest, RowsError> {
    let mut out = LabelsRequest::default();
    let mut errors = Vec::new();
    let mut line = Vec::new();
    let mut row = 0u64;
    loop {
        line.clear();
        reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.ids.len() >= MAX_LABELS {
            return Err(too_many());
        }
        match serde_json::from_slice::<LabelLine>(&line) {
            Ok(l) => {
                out.ids.push(l.id);
                out.labels.push(l.label);
            }
            Err(e) => {
                let m = e.to_string();
                let m = m.split(" at line ").next().unwrap_or(&m).to_string();
                errors.push(row_error(
                    row,
                    None,
                    format!("is not an {{\"id\", \"label\"}} object: {m}"),
                ));
                if errors.len() >= 50 {
                    break;
                }
            }
        }
        row += 1;
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(RowsError::Invalid(errors))
    }
}

/// Decode a CSV labels body: a header with `id` and `label` columns. Multilabel cells list label
/// names separated by `|`; a multiclass cell is a class name or index.
pub fn decode_csv<R: Read>(reader: R) -> Result<LabelsRequest, RowsError> {
    // Cells are taken as written (an id " spaced " is that id, as in JSON); only the header is
    // trimmed.
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::Headers)
        .from_reader(reader);
    let header: Vec<String> = match csv.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => return Err(csv_error(e, 0)),
    };
    let (Some(id_col), Some(label_col)) = (
        header.iter().position(|h| h == "id"),
        header.iter().position(|h| h == "label"),
    ) else {
        return Err(RowsError::Invalid(vec![column_error(
            "id",
            "a labels CSV has a header with the columns id and label",
        )]));
    };
    if let Some(other) = header.iter().find(|h| *h != "id" && *h != "label") {
        return Err(RowsError::Invalid(vec![column_error(
            other,
            "unknown column; expected id and label",
        )]));
    }
    let mut out = LabelsRequest::default();
    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(e, row)),
        }
        if out.ids.len() >= MAX_LABELS {
            return Err(too_many());
        }
        let id = record.get(id_col).unwrap_or_default().to_string();
        let cell = record.get(label_col).unwrap_or_default();
        out.ids.push(id);
        // A cell with `|` is a set of label names; any other cell is text, resolved against its
        // batch's classes as every text label is: a class name, else a whole number is an index.
        let label = if cell.contains('|') {
            Label::Row(
                cell.split('|')
                    .map(|s| Label::Name(s.trim().to_string()))
                    .collect(),
            )
        } else {
            Label::Name(cell.to_string())
        };
        out.labels.push(label);
        row += 1;
    }
    Ok(out)
}

/// A CSV reading error: the body's read error as such, else the row it is in.
fn csv_error(e: csv::Error, row: u64) -> RowsError {
    if e.is_io_error() {
        if let csv::ErrorKind::Io(io) = e.into_kind() {
            return RowsError::Io(io);
        }
        return RowsError::Malformed("the body could not be read".into());
    }
    RowsError::Invalid(vec![row_error(row, None, e.to_string())])
}

/// A CSV label cell for a multilabel batch: names separated by `|` (one name alone is a set of
/// one; an empty cell is the empty set).
pub fn as_multilabel(l: &Label) -> Label {
    match l {
        Label::Name(s) if s.is_empty() => Label::Row(vec![]),
        Label::Name(s) => Label::Row(vec![Label::Name(s.clone())]),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_to_canonical_text_against_the_classes() {
        let classes: Vec<String> = ["cat", "dog", "bird"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mc = LabelSpace::new(Task::Multiclass, &classes);
        assert_eq!(mc.canonical(&Label::Name("bird".into())).unwrap(), "2");
        assert_eq!(mc.canonical(&Label::Index(1)).unwrap(), "1");
        assert!(mc.canonical(&Label::Index(3)).is_err());
        // Text that names no class but is a whole number is an index; a name wins over an
        // index (classes named by numbers).
        assert_eq!(mc.canonical(&Label::Name("1".into())).unwrap(), "1");
        assert!(mc.canonical(&Label::Name("3".into())).is_err());
        assert!(mc.canonical(&Label::Name("+1".into())).is_err());
        let numbered: Vec<String> = ["1", "0"].iter().map(|s| s.to_string()).collect();
        let n = LabelSpace::new(Task::Multiclass, &numbered);
        assert_eq!(n.canonical(&Label::Name("1".into())).unwrap(), "0");
        assert_eq!(n.canonical(&Label::Name("0".into())).unwrap(), "1");
        assert_eq!(
            n.canonical(&Label::Index(1)).unwrap(),
            "1",
            "a number is an index"
        );
        assert_eq!(mc.describe("2"), "\"bird\"");
        let ml = LabelSpace::new(Task::Multilabel, &classes);
        let names = Label::Row(vec![Label::Name("bird".into()), Label::Name("cat".into())]);
        assert_eq!(ml.canonical(&names).unwrap(), "0,2");
        let row = Label::Row(vec![Label::Index(0), Label::Index(1), Label::Index(1)]);
        assert_eq!(ml.canonical(&row).unwrap(), "1,2");
        assert_eq!(ml.canonical(&Label::Row(vec![])).unwrap(), "");
        assert_eq!(ml.describe("1,2"), "[\"dog\", \"bird\"]");
    }

    #[test]
    fn requests_with_repeated_or_missing_parts_are_refused() {
        let r = LabelsRequest {
            ids: vec!["a".into(), "a".into()],
            labels: vec![Label::Index(0)],
        };
        let e = r.validate().unwrap_err();
        let pointers: Vec<_> = e.iter().map(|f| f.pointer.clone().unwrap()).collect();
        assert_eq!(pointers, ["/labels", "/ids/1"]);
    }

    #[test]
    fn ndjson_and_csv_bodies_decode() {
        let r = decode_ndjson(
            &b"{\"id\": \"a\", \"label\": 1}\n\n{\"id\": \"b\", \"label\": \"cat\"}\n"[..],
        )
        .unwrap();
        assert_eq!(r.ids, ["a", "b"]);
        assert_eq!(r.labels, [Label::Index(1), Label::Name("cat".into())]);
        let r = decode_csv(&b"id , label \na,2\nb,cat|dog\n spaced ,cat\n"[..]).unwrap();
        assert_eq!(r.ids, ["a", "b", " spaced "], "cells are not trimmed");
        // A text cell stays text: resolved against the batch's classes (name first).
        assert_eq!(r.labels[0], Label::Name("2".into()));
        assert!(matches!(&r.labels[1], Label::Row(v) if v.len() == 2));
        let Err(RowsError::Invalid(e)) = decode_csv(&b"id,label,extra\n"[..]) else {
            panic!("an unknown column is refused");
        };
        assert_eq!(e[0].column.as_deref(), Some("extra"));
    }
}
