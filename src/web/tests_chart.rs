use super::*;

#[test]
fn ticks_are_nice_and_cover_the_range() {
    let (t, s) = nice_ticks(0.13, 0.97, 6);
    assert_eq!(s, 0.2);
    assert!(t[0] <= 0.13 && *t.last().unwrap() >= 0.97);
    assert_eq!(tick_label(0.4, 0.2), "0.4");
    assert_eq!(tick_label(0.25, 0.25), "0.25");
    assert_eq!(tick_label(-2.0, 1.0), "−2");
    let (t, _) = nice_ticks(1.0, 1.0, 5);
    assert!(t.len() >= 2);
}

#[test]
fn time_ticks_stay_few() {
    let (t, step) = time_ticks(0.0, 86400.0 * 3.0, 7);
    assert!(t.len() <= 7, "{t:?}");
    assert_eq!(step, 43200.0);
}

#[test]
fn charts_escape_labels() {
    let bars_svg = bars(
        &[Bar {
            label: "<script>x</script>".into(),
            value: Some(1.0),
            bound: None,
            text: "1.0000 bits".into(),
            tip: String::new(),
        }],
        "information (bits)",
        None,
        None,
    );
    assert!(!bars_svg.contains("<script>"));
    assert!(bars_svg.contains("&lt;script&gt;"));
    let heat = heatmap(&Heat {
        rows: vec!["<b>".into(), "ok".into()],
        cols: vec!["<b>".into(), "ok".into()],
        counts: vec![3.0, 1.0, 0.0, 4.0],
    });
    assert!(!heat.contains("<b>"));
}
