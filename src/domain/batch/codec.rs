//! The compact binary form a batch is stored in.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Batch, BatchData, LabelForm, Task};
use crate::domain::columns::Matrix;
use crate::domain::segments::SegmentColumn;

// ---------------------------------------------------------------------------------------------
// Stored form: a small JSON header followed by raw little-endian arrays. Lossless for every value.

const MAGIC: &[u8; 4] = b"IAB1";

#[derive(Serialize, Deserialize)]
struct Header {
    task: Task,
    classes: Vec<String>,
    n: usize,
    label_form: LabelForm,
    prediction_form: LabelForm,
    arrays: Vec<ArrayHeader>,
    /// Segment keys and their value names (codes are the `segment:<key>` arrays). Absent when
    /// there are none, so batches without segments encode as they always did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<SegmentHeader>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    labels_later: bool,
    /// What `normalize` did (absent otherwise, so other batches encode as they always did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    normalized: Option<super::Normalized>,
}

#[derive(Serialize, Deserialize)]
struct SegmentHeader {
    key: String,
    values: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ArrayHeader {
    name: String,
    dtype: String,
    rows: usize,
    cols: usize,
}

enum Arr<'a> {
    U32(&'a [u32]),
    F64(&'a Matrix),
    F64Vec(&'a [f64]),
}

const SEGMENT_PREFIX: &str = "segment:";

impl Batch {
    fn arrays(&self) -> (LabelForm, LabelForm, Vec<(Cow<'static, str>, Arr<'_>)>) {
        let mut v = Vec::new();
        let (lf, pf) = match &self.data {
            BatchData::Multiclass {
                labels,
                label_form,
                predictions,
                prediction_form,
                probabilities,
                features,
            } => {
                v.push(("labels", Arr::U32(labels)));
                if let Some(p) = predictions {
                    v.push(("predictions", Arr::U32(p)));
                }
                if let Some(m) = probabilities {
                    v.push(("probabilities", Arr::F64(m)));
                }
                if let Some(m) = features {
                    v.push(("x", Arr::F64(m)));
                }
                (*label_form, *prediction_form)
            }
            BatchData::Pairs { x, y } => {
                v.push(("x", Arr::F64(x)));
                v.push(("y", Arr::F64(y)));
                (LabelForm::Index, LabelForm::Index)
            }
            BatchData::Regression {
                targets,
                predictions,
            } => {
                v.push(("targets", Arr::F64Vec(targets)));
                v.push(("predictions_real", Arr::F64Vec(predictions)));
                (LabelForm::Index, LabelForm::Index)
            }
            BatchData::Multilabel {
                labels,
                label_form,
                predictions,
                prediction_form,
                scores,
            } => {
                v.push(("labels", Arr::F64(labels)));
                if let Some(p) = predictions {
                    v.push(("predictions", Arr::F64(p)));
                }
                if let Some(m) = scores {
                    v.push(("scores", Arr::F64(m)));
                }
                (*label_form, *prediction_form)
            }
        };
        if let Some(w) = &self.weights {
            v.push(("weights", Arr::F64Vec(w)));
        }
        if let Some(t) = &self.truth_matrix {
            v.push(("truth_matrix", Arr::F64(t)));
        }
        let mut v: Vec<(Cow<'static, str>, Arr<'_>)> =
            v.into_iter().map(|(k, a)| (Cow::Borrowed(k), a)).collect();
        for s in &self.segments {
            v.push((
                Cow::Owned(format!("{SEGMENT_PREFIX}{}", s.key)),
                Arr::U32(&s.codes),
            ));
        }
        (lf, pf, v)
    }

    /// sha256 (hex) of a multiclass batch's samples as a comparison sees them: the classes, every
    /// label in order and the weights (`None` for other tasks). Equal digests mean the same
    /// evaluation samples: two models' results on them can be compared paired.
    pub fn labels_digest(&self) -> Option<String> {
        let BatchData::Multiclass { labels, .. } = &self.data else {
            return None;
        };
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"infoaudit labels v1\0");
        h.update((self.classes.len() as u64).to_le_bytes());
        for c in &self.classes {
            h.update((c.len() as u64).to_le_bytes());
            h.update(c.as_bytes());
        }
        h.update((labels.len() as u64).to_le_bytes());
        for l in labels {
            h.update(l.to_le_bytes());
        }
        match &self.weights {
            None => h.update([0u8]),
            Some(w) => {
                h.update([1u8]);
                for x in w {
                    h.update(x.to_bits().to_le_bytes());
                }
            }
        }
        Some(hex::encode(h.finalize()))
    }

    /// Encode to the stored binary form (one contiguous copy; see [`Batch::encoded_parts`]).
    pub fn encode(&self) -> Vec<u8> {
        self.encoded_parts().concat()
    }

    /// The stored binary form in parts: the magic and header, then each array's bytes. On a
    /// little-endian machine the arrays are views of the batch's own memory, so storing a batch
    /// does not hold a second copy of its numbers.
    pub fn encoded_parts(&self) -> Vec<Cow<'_, [u8]>> {
        use zerocopy::IntoBytes;
        let (label_form, prediction_form, arrays) = self.arrays();
        let header = Header {
            task: self.task,
            classes: self.classes.clone(),
            n: self.n,
            label_form,
            prediction_form,
            segments: self
                .segments
                .iter()
                .map(|s| SegmentHeader {
                    key: s.key.clone(),
                    values: s.values.clone(),
                })
                .collect(),
            labels_later: self.labels_later,
            normalized: self.normalized,
            arrays: arrays
                .iter()
                .map(|(name, a)| {
                    let (dtype, rows, cols) = match a {
                        Arr::U32(v) => ("u32", v.len(), 1),
                        Arr::F64(m) => ("f64", m.rows, m.cols),
                        Arr::F64Vec(v) => ("f64", v.len(), 1),
                    };
                    ArrayHeader {
                        name: name.to_string(),
                        dtype: dtype.into(),
                        rows,
                        cols,
                    }
                })
                .collect(),
        };
        let h = serde_json::to_vec(&header).expect("header serialises");
        let mut head = Vec::with_capacity(8 + h.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(h.len() as u32).to_le_bytes());
        head.extend_from_slice(&h);
        let mut parts = vec![Cow::Owned(head)];
        for (_, a) in &arrays {
            let part: Cow<'_, [u8]> = if cfg!(target_endian = "little") {
                Cow::Borrowed(match a {
                    Arr::U32(v) => v.as_bytes(),
                    Arr::F64(m) => m.data.as_bytes(),
                    Arr::F64Vec(v) => v.as_bytes(),
                })
            } else {
                Cow::Owned(match a {
                    Arr::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Arr::F64(m) => m.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    Arr::F64Vec(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                })
            };
            parts.push(part);
        }
        parts
    }

    /// Decode the stored binary form.
    pub fn decode(bytes: &[u8]) -> anyhow::Result<Batch> {
        let mut d = Decoder::new(bytes.len());
        d.push(bytes)?;
        d.finish()
    }

    fn from_parts(
        header: Header,
        mut u32s: HashMap<String, Vec<u32>>,
        mut f64s: HashMap<String, Matrix>,
    ) -> anyhow::Result<Batch> {
        use anyhow::Context;
        let weights = f64s.remove("weights").map(|m| m.data);
        let truth_matrix = f64s.remove("truth_matrix");
        let mut segments = Vec::with_capacity(header.segments.len());
        for s in header.segments {
            let codes = u32s
                .remove(&format!("{SEGMENT_PREFIX}{}", s.key))
                .context("segment codes missing")?;
            if codes.len() != header.n || codes.iter().any(|&c| c as usize >= s.values.len()) {
                anyhow::bail!("segment {} is inconsistent", s.key);
            }
            segments.push(SegmentColumn {
                key: s.key,
                values: s.values,
                codes,
            });
        }
        let data = match header.task {
            Task::Multiclass => BatchData::Multiclass {
                labels: u32s.remove("labels").context("labels missing")?,
                label_form: header.label_form,
                predictions: u32s.remove("predictions"),
                prediction_form: header.prediction_form,
                probabilities: f64s.remove("probabilities"),
                features: f64s.remove("x"),
            },
            Task::Multilabel => BatchData::Multilabel {
                labels: f64s.remove("labels").context("labels missing")?,
                label_form: header.label_form,
                predictions: f64s.remove("predictions"),
                prediction_form: header.prediction_form,
                scores: f64s.remove("scores"),
            },
            Task::Pairs => BatchData::Pairs {
                x: f64s.remove("x").context("x missing")?,
                y: f64s.remove("y").context("y missing")?,
            },
            Task::Regression => BatchData::Regression {
                targets: f64s.remove("targets").context("targets missing")?.data,
                predictions: f64s
                    .remove("predictions_real")
                    .context("predictions missing")?
                    .data,
            },
        };
        Ok(Batch {
            task: header.task,
            classes: header.classes,
            n: header.n,
            data,
            weights,
            truth_matrix,
            segments,
            labels_later: header.labels_later,
            normalized: header.normalized,
        })
    }

    /// The upload's JSON form again (as `GET /v1/batches/{id}/data` returns it).
    pub fn to_json(&self, metadata: &serde_json::Value) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let class_col = |v: &[u32], form: LabelForm| -> Value {
            match form {
                LabelForm::Name => {
                    Value::Array(v.iter().map(|&c| json!(self.classes[c as usize])).collect())
                }
                _ => json!(v),
            }
        };
        let set_col = |m: &Matrix, form: LabelForm| -> Value {
            Value::Array(
                (0..m.rows)
                    .map(|r| match form {
                        LabelForm::Name => Value::Array(
                            m.row(r)
                                .iter()
                                .enumerate()
                                .filter(|(_, &v)| v == 1.0)
                                .map(|(j, _)| json!(self.classes[j]))
                                .collect(),
                        ),
                        _ => Value::Array(m.row(r).iter().map(|&v| json!(v as u8)).collect()),
                    })
                    .collect(),
            )
        };
        let mut o = Map::new();
        o.insert("task".into(), json!(self.task));
        if !self.classes.is_empty() {
            o.insert("classes".into(), json!(self.classes));
        }
        match &self.data {
            BatchData::Multiclass {
                labels,
                label_form,
                predictions,
                prediction_form,
                probabilities,
                features,
            } => {
                if !self.labels_later {
                    o.insert("labels".into(), class_col(labels, *label_form));
                }
                if let Some(m) = probabilities {
                    o.insert("probabilities".into(), json!(m));
                }
                if let Some(p) = predictions {
                    o.insert("predictions".into(), class_col(p, *prediction_form));
                }
                if let Some(m) = features {
                    o.insert("x".into(), json!(m));
                }
            }
            BatchData::Pairs { x, y } => {
                o.insert("x".into(), json!(x));
                o.insert("y".into(), json!(y));
            }
            BatchData::Regression {
                targets,
                predictions,
            } => {
                o.insert("targets".into(), json!(targets));
                o.insert("predictions".into(), json!(predictions));
            }
            BatchData::Multilabel {
                labels,
                label_form,
                predictions,
                prediction_form,
                scores,
            } => {
                if !self.labels_later {
                    o.insert("labels".into(), set_col(labels, *label_form));
                }
                if let Some(m) = scores {
                    o.insert("scores".into(), json!(m));
                }
                if let Some(p) = predictions {
                    o.insert("predictions".into(), set_col(p, *prediction_form));
                }
            }
        }
        if let Some(w) = &self.weights {
            o.insert("weights".into(), json!(w));
        }
        if let Some(t) = &self.truth_matrix {
            o.insert("truth_matrix".into(), json!(t));
        }
        if !self.segments.is_empty() {
            let segments: Map<String, Value> = self
                .segments
                .iter()
                .map(|s| {
                    let col = s
                        .codes
                        .iter()
                        .map(|&c| json!(s.values[c as usize]))
                        .collect();
                    (s.key.clone(), Value::Array(col))
                })
                .collect();
            o.insert("segments".into(), Value::Object(segments));
        }
        o.insert("metadata".into(), metadata.clone());
        Value::Object(o)
    }
}

/// Decodes the stored form from consecutive pieces (the stored chunks) without holding the
/// encoded bytes: each array is allocated once, at its declared size, and filled as its bytes
/// arrive, so reading a batch back holds one copy of its numbers (plus one piece).
pub struct Decoder {
    /// The declared size of the whole encoding: no array may claim more.
    limit: usize,
    /// Bytes of the header, or of one array element split between two pieces.
    pending: Vec<u8>,
    header: Option<Header>,
    /// The array being filled (index into the header's arrays) and its values so far.
    current: usize,
    values: Values,
    u32s: HashMap<String, Vec<u32>>,
    f64s: HashMap<String, Matrix>,
}

enum Values {
    U32(Vec<u32>),
    F64(Vec<f64>),
}

impl Decoder {
    /// A decoder for an encoding of `limit` bytes in all.
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            limit,
            pending: Vec::new(),
            header: None,
            current: 0,
            values: Values::U32(Vec::new()),
            u32s: HashMap::new(),
            f64s: HashMap::new(),
        }
    }

    /// The next piece of the encoding.
    pub fn push(&mut self, mut piece: &[u8]) -> anyhow::Result<()> {
        use anyhow::{bail, Context};
        if self.header.is_none() {
            let take = piece.len().min(8usize.saturating_sub(self.pending.len()));
            self.pending.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.pending.len() < 8 {
                return Ok(());
            }
            if &self.pending[..4] != MAGIC {
                bail!("stored batch has an unknown format");
            }
            let hlen = u32::from_le_bytes(self.pending[4..8].try_into()?) as usize;
            if hlen > self.limit {
                bail!("truncated header");
            }
            let take = piece.len().min(8 + hlen - self.pending.len());
            self.pending.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.pending.len() < 8 + hlen {
                return Ok(());
            }
            let header: Header = serde_json::from_slice(&self.pending[8..])?;
            let mut total = 8 + hlen;
            for a in &header.arrays {
                let size = match a.dtype.as_str() {
                    "u32" => 4usize,
                    "f64" => 8,
                    other => bail!("unknown dtype {other}"),
                };
                let bytes = a
                    .rows
                    .checked_mul(a.cols)
                    .and_then(|c| c.checked_mul(size))
                    .context("truncated array")?;
                total = total.checked_add(bytes).context("truncated array")?;
            }
            if total > self.limit {
                bail!("truncated array");
            }
            self.pending.clear();
            self.header = Some(header);
            self.start(0)?;
        }
        self.fill(piece);
        Ok(())
    }

    /// Start array `i` (with its whole capacity, refused rather than aborting when memory is
    /// short) and close every empty array from there.
    fn start(&mut self, mut i: usize) -> anyhow::Result<()> {
        while let Some((count, is_u32)) = self
            .header
            .as_ref()
            .and_then(|h| h.arrays.get(i))
            .map(|a| (a.rows * a.cols, a.dtype == "u32"))
        {
            let refused = |e| anyhow::anyhow!("cannot hold an array of {count} values: {e}");
            self.values = if is_u32 {
                let mut v = Vec::new();
                v.try_reserve_exact(count).map_err(refused)?;
                Values::U32(v)
            } else {
                Values::F64(crate::estimate::simd::reserve_f64(count).map_err(refused)?)
            };
            if count > 0 {
                break;
            }
            self.close(i);
            i += 1;
        }
        self.current = i;
        Ok(())
    }

    /// File the finished array `i`.
    fn close(&mut self, i: usize) {
        let header = self.header.as_ref().expect("header read");
        let a = &header.arrays[i];
        match std::mem::replace(&mut self.values, Values::U32(Vec::new())) {
            Values::U32(v) => {
                self.u32s.insert(a.name.clone(), v);
            }
            Values::F64(v) => {
                self.f64s
                    .insert(a.name.clone(), Matrix::new(a.rows, a.cols, v));
            }
        }
    }

    fn fill(&mut self, mut piece: &[u8]) {
        loop {
            let Some(a) = self
                .header
                .as_ref()
                .and_then(|h| h.arrays.get(self.current))
            else {
                // Past the last array: trailing bytes are ignored, as they always were.
                return;
            };
            let count = a.rows * a.cols;
            let size = match self.values {
                Values::U32(_) => 4,
                Values::F64(_) => 8,
            };
            // An element split between pieces.
            if !self.pending.is_empty() {
                let take = piece.len().min(size - self.pending.len());
                self.pending.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if self.pending.len() < size {
                    return;
                }
                let element = std::mem::take(&mut self.pending);
                self.extend(&element);
            }
            let filled = match &self.values {
                Values::U32(v) => v.len(),
                Values::F64(v) => v.len(),
            };
            let whole = (count - filled).min(piece.len() / size);
            self.extend(&piece[..whole * size]);
            piece = &piece[whole * size..];
            if filled + whole == count {
                let i = self.current;
                self.close(i);
                // Capacity was checked against the limit with the header; a refusal here can
                // only come from the allocator, and it leaves the array missing (reported by
                // `finish`).
                if self.start(i + 1).is_err() {
                    self.current = usize::MAX;
                    return;
                }
                continue;
            }
            self.pending.extend_from_slice(piece);
            return;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        match &mut self.values {
            Values::U32(v) => v.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))),
            ),
            Values::F64(v) => v.extend(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))),
            ),
        }
    }

    /// The batch, once every piece was pushed.
    pub fn finish(self) -> anyhow::Result<Batch> {
        use anyhow::bail;
        let Some(header) = self.header else {
            if self.pending.len() < 8 || &self.pending[..4] != MAGIC {
                bail!("stored batch has an unknown format");
            }
            bail!("truncated header");
        };
        if self.current == usize::MAX {
            bail!("cannot hold the batch's arrays");
        }
        if self.current < header.arrays.len() {
            bail!("truncated array");
        }
        Batch::from_parts(header, self.u32s, self.f64s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::batch::BatchRequest;
    use crate::error::FieldError;
    use proptest::prelude::*;

    fn parse(body: serde_json::Value) -> Result<Batch, Vec<FieldError>> {
        let req: BatchRequest = serde_json::from_value(body).unwrap();
        req.validate().map(|v| v.batch)
    }

    #[test]
    fn stored_form_round_trips() {
        let body = serde_json::json!({
            "task": "multiclass", "classes": ["cat", "dog", "bird"],
            "labels": ["cat", "bird", "dog"], "predictions": [0, 2, 2],
            "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]],
            "weights": [1.0, 0.5, 2.0], "truth_matrix": [[1, 0.3, 0], [0.3, 1, 0.3], [0, 0.3, 1]]
        });
        let b = parse(body.clone()).unwrap();
        let bytes = b.encode();
        let back = Batch::decode(&bytes).unwrap();
        assert_eq!(back, b);
        let json = back.to_json(&serde_json::json!({}));
        assert_eq!(json["labels"], body["labels"]);
        assert_eq!(json["predictions"], body["predictions"]);
        assert_eq!(
            json["probabilities"],
            serde_json::json!([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
        );
    }

    /// The stored form decoded from pieces of every size (as the stored chunks arrive) is the
    /// batch; a cut-off or damaged encoding is an error, never a panic.
    #[test]
    fn stored_form_decodes_from_pieces_and_refuses_damage() {
        let b = parse(serde_json::json!({
            "task": "multiclass", "classes": ["cat", "dog", "bird"],
            "labels": ["cat", "bird", "dog", "cat"], "predictions": [0, 2, 2, 1],
            "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]],
            "weights": [1.0, 0.5, 2.0, 0.0]
        }))
        .unwrap();
        let bytes = b.encode();
        for size in [1, 2, 3, 5, 7, 8, 13, 64, bytes.len()] {
            let mut d = Decoder::new(bytes.len());
            for piece in bytes.chunks(size) {
                d.push(piece).unwrap();
            }
            assert_eq!(d.finish().unwrap(), b, "pieces of {size} bytes");
        }
        for cut in [0, 3, 8, 20, bytes.len() - 9, bytes.len() - 1] {
            let mut d = Decoder::new(bytes.len());
            let err = d.push(&bytes[..cut]).and_then(|_| d.finish());
            assert!(err.is_err(), "cut at {cut}");
        }
        // A header that claims more than the stored size is refused before allocating.
        assert!(Batch::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert!(Batch::decode(&wrong).is_err());
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Batch::decode(&huge).is_err());
    }

    proptest! {
        #[test]
        fn any_valid_multiclass_batch_round_trips(
            rows in proptest::collection::vec((0u32..4, proptest::collection::vec(0.0f64..1.0, 4)), 2..40)
        ) {
            let labels: Vec<u32> = rows.iter().map(|r| r.0).collect();
            let probs: Vec<Vec<f64>> = rows.iter().map(|r| {
                let s: f64 = r.1.iter().sum::<f64>() + 1e-9;
                r.1.iter().map(|v| v / s).collect()
            }).collect();
            let b = parse(serde_json::json!({"task": "multiclass", "classes": ["a","b","c","d"],
                "labels": labels, "probabilities": probs})).unwrap();
            let back = Batch::decode(&b.encode()).unwrap();
            prop_assert_eq!(&back, &b);
            let json = back.to_json(&serde_json::json!({}));
            let again = parse(json).unwrap();
            prop_assert_eq!(again, b);
        }
    }
}
