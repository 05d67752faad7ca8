use super::*;
use std::path::Path;

fn moved_record() -> FileRecord {
    FileRecord::moved_sample()
}

#[test]
fn the_table_shows_a_moved_file_where_it_is_now_and_where_it_came_from() {
    let table = to_table(&[(moved_record(), 0, Vec::new())]);
    let mut lines = table.lines().skip(1);
    let main = lines.next().unwrap();
    assert!(main.starts_with("done"), "{table}");
    assert!(main.ends_with(" /srv/done/show/ep1.mp4"), "{table}");
    let from = lines.next().unwrap();
    assert_eq!(
        from.split_whitespace().collect::<Vec<_>>(),
        ["from", "/srv/drop/show/ep1.mp4"]
    );
    assert!(!table.contains("moved to"), "{table}");
}

#[test]
fn a_file_not_moved_is_shown_at_its_path_even_with_an_intent() {
    let mut record = moved_record();
    record.disposal = Some(Disposed::Skipped("the file is gone from its path".into()));
    assert_eq!(moved_to(&record), None);
    let table = to_table(&[(record, 0, Vec::new())]);
    assert!(table
        .lines()
        .nth(1)
        .unwrap()
        .ends_with(" /srv/drop/show/ep1.mp4"));
    assert!(
        !table.lines().any(|l| l.trim_start().starts_with("from ")),
        "{table}"
    );
    let mut kept = moved_record();
    kept.disposed = false;
    assert_eq!(moved_to(&kept), None, "not moved before its action ran");
}

#[test]
fn the_json_keeps_the_drop_path_and_moved_to() {
    let json = json_line(&moved_record(), 0, &[]);
    assert_eq!(json.lines().count(), 1, "{json}");
    let row: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(row["path"], "/srv/drop/show/ep1.mp4");
    assert_eq!(row["movedTo"], "/srv/done/show/ep1.mp4");
    assert_eq!(
        moved_to(&moved_record()),
        Some(Path::new("/srv/done/show/ep1.mp4"))
    );
}
