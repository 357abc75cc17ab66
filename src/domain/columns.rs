//! Column types for the columnar upload body, deserialised without per-row allocations where the
//! data is numeric (a million-row probability matrix becomes one flat `Vec<f64>`).

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dense row-major matrix. `ragged` remembers the first row whose length differed from the
/// first row's (the matrix is then unusable and validation reports it).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
    pub ragged: Option<(usize, usize)>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        debug_assert_eq!(rows * cols, data.len());
        Matrix {
            rows,
            cols,
            data,
            ragged: None,
        }
    }

    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn view(&self) -> ndarray::ArrayView2<'_, f64> {
        ndarray::ArrayView2::from_shape((self.rows, self.cols), &self.data)
            .expect("matrix shape matches its data")
    }
}

impl Serialize for Matrix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.rows))?;
        for r in 0..self.rows {
            seq.serialize_element(self.row(r))?;
        }
        seq.end()
    }
}

struct RowSeed<'a> {
    data: &'a mut Vec<f64>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(v) = seq.next_element::<f64>()? {
            self.data.push(v);
            n += 1;
        }
        Ok(n)
    }
}

impl<'de> Deserialize<'de> for Matrix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Matrix;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of arrays of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Matrix, A::Error> {
                let mut m = Matrix::default();
                if let Some(hint) = seq.size_hint() {
                    m.data.reserve(hint.saturating_mul(4));
                }
                while let Some(len) = seq.next_element_seed(RowSeed { data: &mut m.data })? {
                    if m.rows == 0 {
                        m.cols = len;
                        m.data.reserve(len.saturating_mul(1024));
                    } else if len != m.cols && m.ragged.is_none() {
                        m.ragged = Some((m.rows, len));
                    }
                    m.rows += 1;
                }
                if m.ragged.is_some() {
                    m.data = Vec::new();
                } else {
                    m.data.shrink_to_fit();
                }
                Ok(m)
            }
        }
        d.deserialize_seq(V)
    }
}

/// One label cell as uploaded: a class index, a class name, or (multilabel) a row of either.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    Index(i64),
    Number(f64),
    Name(String),
    Row(Vec<Label>),
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Label;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a class index, a class name, or an array of them")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Label, E> {
                Ok(i64::try_from(v).map_or(Label::Number(v as f64), Label::Index))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Label, E> {
                Ok(Label::Index(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Label, E> {
                Ok(Label::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Label, E> {
                Ok(Label::Name(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Label, E> {
                Ok(Label::Name(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Label, A::Error> {
                let mut row = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(l) = seq.next_element::<Label>()? {
                    row.push(l);
                }
                Ok(Label::Row(row))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Label::Index(i) => s.serialize_i64(*i),
            Label::Number(x) => s.serialize_f64(*x),
            Label::Name(n) => s.serialize_str(n),
            Label::Row(r) => r.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_parses_flat_and_detects_ragged_rows() {
        let m: Matrix = serde_json::from_str("[[1,2,3],[4,5,6]]").unwrap();
        assert_eq!((m.rows, m.cols), (2, 3));
        assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(m.ragged, None);
        let r: Matrix = serde_json::from_str("[[1,2],[3,4],[5],[6,7,8]]").unwrap();
        assert_eq!(r.ragged, Some((2, 1)));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            "[[1.0,2.0,3.0],[4.0,5.0,6.0]]"
        );
    }

    #[test]
    fn labels_parse_every_form() {
        let l: Vec<Label> = serde_json::from_str(r#"[0, "dog", 1.5, [0, 1], ["a"]]"#).unwrap();
        assert_eq!(
            l,
            vec![
                Label::Index(0),
                Label::Name("dog".into()),
                Label::Number(1.5),
                Label::Row(vec![Label::Index(0), Label::Index(1)]),
                Label::Row(vec![Label::Name("a".into())]),
            ]
        );
    }
}
