//! CSV upload bodies: a header row naming the columns (`label`, `p_<class>` or `probabilities_<i>`,
//! `score_<label>`, `x_<i>`/`y_<i>`, `target`/`prediction`, `weight`, `id`, `segment_<key>`), one
//! sample per row, decoded row by row into the columnar [`BatchRequest`] with the builders of
//! [`super::rows`].

use std::collections::HashMap;
use std::io::Read;

use super::batch::{BatchRequest, Task};
use super::columns::Label;
use super::rows::*;
use crate::error::FieldError;

/// What one CSV column holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Label,
    Prediction,
    Target,
    Weight,
    /// Class probability, by position among the `p_` columns.
    P(usize),
    /// Multilabel score, by position among the `score_` columns.
    Score(usize),
    X(usize),
    Y(usize),
    Id,
    /// A segment column, by position among the `segment_` columns.
    Segment(usize),
    /// A column already reported as an error.
    Ignore,
}

/// The header of a CSV body, resolved into roles and matrix column orders.
struct CsvLayout {
    roles: Vec<Role>,
    /// `p_` (or `score_`) suffixes in the order of the matrix columns.
    class_columns: Vec<String>,
    x_names: Vec<String>,
    y_names: Vec<String>,
    /// Segment keys (the `segment_` suffixes) in header order.
    segment_keys: Vec<String>,
}

/// Resolve the header. `p_<class>` and `score_<label>` columns define the classes (in header
/// order) unless `classes` is given, in which case they are put in the classes' order;
/// `x_<i>`/`y_<i>` are ordered by `i`.
fn csv_layout(header: &[String], options: &mut RowOptions) -> Result<CsvLayout, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut roles = Vec::with_capacity(header.len());
    let mut seen = HashMap::new();
    let (mut p_cols, mut score_cols, mut xs, mut ys) = (vec![], vec![], vec![], vec![]);
    let mut segment_keys: Vec<String> = vec![];
    for (c, name) in header.iter().enumerate() {
        if seen.insert(name.as_str(), c).is_some() {
            errors.push(column_error(name, "appears twice in the header"));
        }
        let indexed = |rest: &str, errors: &mut Vec<FieldError>| match rest.parse::<usize>() {
            Ok(i) => Some(i),
            Err(_) => {
                errors.push(column_error(
                    name,
                    "x_ and y_ columns need a numeric suffix (x_0, x_1, ...)",
                ));
                None
            }
        };
        let role = match name.as_str() {
            "label" => Some(Role::Label),
            "prediction" => Some(Role::Prediction),
            "target" => Some(Role::Target),
            "weight" => Some(Role::Weight),
            "id" => Some(Role::Id),
            n if n.starts_with("segment_") && n.len() > 8 => {
                segment_keys.push(n[8..].to_string());
                Some(Role::Segment(segment_keys.len() - 1))
            }
            n if n.starts_with("p_") && n.len() > 2 => {
                p_cols.push((c, n[2..].to_string()));
                None
            }
            n if n.starts_with("score_") && n.len() > 6 => {
                score_cols.push((c, n[6..].to_string()));
                None
            }
            n if n.starts_with("x_") => {
                if let Some(i) = indexed(&n[2..], &mut errors) {
                    xs.push((i, c));
                }
                None
            }
            n if n.starts_with("y_") => {
                if let Some(i) = indexed(&n[2..], &mut errors) {
                    ys.push((i, c));
                }
                None
            }
            _ => {
                errors.push(column_error(
                    name,
                    "unknown column; expected label, prediction, target, weight, id, p_<class>, score_<label>, x_<i>, y_<i> or segment_<key>",
                ));
                None
            }
        };
        roles.push(role);
    }
    if !p_cols.is_empty() && !score_cols.is_empty() {
        errors.push(column_error(
            &score_cols[0].1,
            "p_ (multiclass) and score_ (multilabel) columns cannot be mixed",
        ));
    }
    let class_cols = if p_cols.is_empty() {
        &score_cols
    } else {
        &p_cols
    };
    let prefix = if p_cols.is_empty() { "score_" } else { "p_" };
    // Order the class columns by the given classes, or adopt them as the classes.
    let order: Vec<(usize, String)> = match &options.classes {
        Some(classes) if !class_cols.is_empty() => {
            let by_name: HashMap<&str, usize> =
                class_cols.iter().map(|(c, n)| (n.as_str(), *c)).collect();
            for (_, n) in class_cols {
                if !classes.contains(n) {
                    errors.push(column_error(
                        &format!("{prefix}{n}"),
                        format!("{n:?} is not one of the classes given in the query"),
                    ));
                }
            }
            let mut order = Vec::new();
            for name in classes {
                match by_name.get(name.as_str()) {
                    Some(&c) => order.push((c, name.clone())),
                    None => errors.push(column_error(
                        &format!("{prefix}{name}"),
                        "is missing: every class needs a column",
                    )),
                }
            }
            order
        }
        _ => class_cols.clone(),
    };
    if options.classes.is_none() && !order.is_empty() {
        options.classes = Some(order.iter().map(|(_, n)| n.clone()).collect());
    }
    let is_p = !p_cols.is_empty();
    for (j, (c, _)) in order.iter().enumerate() {
        roles[*c] = Some(if is_p { Role::P(j) } else { Role::Score(j) });
    }
    xs.sort_unstable();
    ys.sort_unstable();
    for (j, (_, c)) in xs.iter().enumerate() {
        roles[*c] = Some(Role::X(j));
    }
    for (j, (_, c)) in ys.iter().enumerate() {
        roles[*c] = Some(Role::Y(j));
    }
    // A column still without a role was reported above.
    let roles: Vec<Role> = roles
        .into_iter()
        .map(|r| r.unwrap_or(Role::Ignore))
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CsvLayout {
        roles,
        class_columns: order
            .into_iter()
            .map(|(_, n)| format!("{prefix}{n}"))
            .collect(),
        x_names: xs.iter().map(|(_, c)| header[*c].clone()).collect(),
        y_names: ys.iter().map(|(_, c)| header[*c].clone()).collect(),
        segment_keys,
    })
}

fn parse_number(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok()
}

/// A label cell: a known class name, else an integer index, else a name (validation reports it).
/// Multilabel cells hold label names separated by `|` (empty: no label).
fn parse_label(cell: &str, task: Option<Task>, classes: Option<&HashMap<String, ()>>) -> Label {
    if task == Some(Task::Multilabel) {
        if cell.is_empty() {
            return Label::Row(Vec::new());
        }
        return Label::Row(
            cell.split('|')
                .map(|s| Label::Name(s.trim().to_string()))
                .collect(),
        );
    }
    if classes.is_some_and(|c| c.contains_key(cell)) {
        return Label::Name(cell.to_string());
    }
    match cell.parse::<i64>() {
        Ok(i) => Label::Index(i),
        Err(_) => Label::Name(cell.to_string()),
    }
}

/// Decode a CSV body: a header row, then one sample per row. Columns: `label`, `prediction`,
/// `p_<class>` (multiclass probabilities), `score_<label>` (multilabel scores), `x_<i>`/`y_<i>`
/// (pairs, or multiclass features in `x_`), `target` (regression), `weight`. Multilabel `label`
/// and `prediction` cells list label names separated by `|`.
pub fn decode_csv<R: Read>(
    reader: R,
    mut options: RowOptions,
) -> Result<(BatchRequest, ColumnMap), RowsError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(reader);
    let header: Vec<String> = match csv.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => return Err(csv_failure(e, 0)),
    };
    if header.iter().all(String::is_empty) {
        return Err(RowsError::Invalid(vec![FieldError {
            pointer: None,
            row: None,
            column: None,
            message: "the CSV body has no header row".into(),
        }]));
    }
    let layout = csv_layout(&header, &mut options).map_err(RowsError::Invalid)?;
    let has_scores = layout.roles.iter().any(|r| matches!(r, Role::Score(_)));
    let has_y = layout.roles.iter().any(|r| matches!(r, Role::Y(_)));
    let has_target = layout.roles.contains(&Role::Target);
    let task = options.task.or(if has_y {
        Some(Task::Pairs)
    } else if has_target {
        Some(Task::Regression)
    } else if has_scores {
        Some(Task::Multilabel)
    } else {
        Some(Task::Multiclass)
    });
    let class_set: Option<HashMap<String, ()>> = options
        .classes
        .as_ref()
        .map(|c| c.iter().map(|n| (n.clone(), ())).collect());
    let regression = task == Some(Task::Regression);

    let width = |pred: fn(&Role) -> bool| layout.roles.iter().filter(|r| pred(r)).count();
    let (np, ns, nx, ny) = (
        width(|r| matches!(r, Role::P(_))),
        width(|r| matches!(r, Role::Score(_))),
        width(|r| matches!(r, Role::X(_))),
        width(|r| matches!(r, Role::Y(_))),
    );
    let (mut p, mut s, mut x, mut y) = (vec![0.0; np], vec![0.0; ns], vec![0.0; nx], vec![0.0; ny]);
    let mut b = Builder::new();
    let mut record = csv::StringRecord::new();
    loop {
        let row = b.rows as u64;
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => match csv_failure(e, row) {
                RowsError::Io(e) => return Err(RowsError::Io(e)),
                RowsError::Malformed(m) => return Err(RowsError::Malformed(m)),
                RowsError::Invalid(mut errs) => {
                    b.errors.append(&mut errs);
                    b.rows += 1;
                    if b.full() {
                        break;
                    }
                    continue;
                }
            },
        }
        let (mut label, mut prediction, mut target, mut weight) = (None, None, None, None);
        let mut id = None;
        let mut segs = (!layout.segment_keys.is_empty())
            .then(std::collections::BTreeMap::<String, String>::new);
        for (c, cell) in record.iter().enumerate() {
            let number = |errors: &mut Vec<FieldError>| {
                parse_number(cell).or_else(|| {
                    errors.push(row_error(
                        row,
                        Some(&header[c]),
                        format!("{cell:?} is not a number"),
                    ));
                    Some(0.0)
                })
            };
            match layout.roles[c] {
                Role::Label => label = Some(parse_label(cell, task, class_set.as_ref())),
                Role::Prediction if regression => {
                    prediction = number(&mut b.errors).map(Label::Number)
                }
                Role::Prediction => prediction = Some(parse_label(cell, task, class_set.as_ref())),
                Role::Target => target = number(&mut b.errors),
                Role::Weight => weight = number(&mut b.errors),
                Role::P(j) => p[j] = number(&mut b.errors).unwrap_or(0.0),
                Role::Ignore => {}
                Role::Id => id = Some(cell.to_string()),
                Role::Segment(j) => {
                    if let Some(m) = segs.as_mut() {
                        m.insert(layout.segment_keys[j].clone(), cell.to_string());
                    }
                }
                Role::Score(j) => s[j] = number(&mut b.errors).unwrap_or(0.0),
                Role::X(j) => x[j] = number(&mut b.errors).unwrap_or(0.0),
                Role::Y(j) => y[j] = number(&mut b.errors).unwrap_or(0.0),
            }
        }
        b.labels.push(row, label, &mut b.errors);
        b.predictions.push(row, prediction, &mut b.errors);
        b.targets.push(row, target, &mut b.errors);
        b.weights.push(row, weight, &mut b.errors);
        b.probabilities
            .push(row, (np > 0).then_some(&p[..]), &mut b.errors);
        b.scores
            .push(row, (ns > 0).then_some(&s[..]), &mut b.errors);
        b.x.push(row, (nx > 0).then_some(&x[..]), &mut b.errors);
        b.y.push(row, (ny > 0).then_some(&y[..]), &mut b.errors);
        b.ids.push(row, id, &mut b.errors);
        b.segments.push(row, segs, &mut b.errors);
        b.rows += 1;
        if b.full() {
            break;
        }
    }
    let mut map = ColumnMap {
        csv: true,
        ..ColumnMap::default()
    };
    let matrix_field = if has_scores {
        "scores"
    } else {
        "probabilities"
    };
    map.matrix.insert(matrix_field, layout.class_columns);
    map.matrix.insert("x", layout.x_names);
    map.matrix.insert("y", layout.y_names);
    if options.task.is_none() {
        options.task = task;
    }
    b.finish(options).map(|r| (r, map))
}

fn csv_failure(e: csv::Error, row: u64) -> RowsError {
    let message = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(io) => RowsError::Io(io),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => RowsError::Invalid(vec![row_error(
            row,
            None,
            format!("has {len} cells but the header has {expected_len}"),
        )]),
        csv::ErrorKind::Utf8 { .. } => {
            RowsError::Invalid(vec![row_error(row, None, "is not valid UTF-8")])
        }
        _ => RowsError::Invalid(vec![row_error(row, None, message)]),
    }
}
