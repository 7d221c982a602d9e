//! A line diff for side-by-side display: the longest common subsequence of lines, with
//! runs of removals and additions paired up as changed lines. Pod templates are a few
//! hundred lines at most, so the quadratic table is small.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Same,
    Changed,
    Removed,
    Added,
}

/// One row: the left line (number, text) and the right line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub left: Option<(usize, String)>,
    pub right: Option<(usize, String)>,
    pub change: Change,
}

/// Lines beyond this are compared as one block (never reached by pod templates).
const MAX_LINES: usize = 4000;

pub fn side_by_side(left: &str, right: &str) -> Vec<Row> {
    let a: Vec<&str> = left.lines().collect();
    let b: Vec<&str> = right.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return pair(&a, 0, &b, 0);
    }
    // lcs[i][j]: the common subsequence length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut rows = Vec::new();
    let (mut gap_a, mut gap_b) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            rows.extend(pair(&a[gap_a..i], gap_a, &b[gap_b..j], gap_b));
            rows.push(Row {
                left: Some((i + 1, a[i].to_owned())),
                right: Some((j + 1, b[j].to_owned())),
                change: Change::Same,
            });
            i += 1;
            j += 1;
            gap_a = i;
            gap_b = j;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            j += 1;
        } else {
            i += 1;
        }
    }
    rows.extend(pair(&a[gap_a..], gap_a, &b[gap_b..], gap_b));
    rows
}

/// Lines only one side has, side by side: paired as changed while both have some.
fn pair(a: &[&str], a0: usize, b: &[&str], b0: usize) -> Vec<Row> {
    (0..a.len().max(b.len()))
        .map(|k| {
            let left = a.get(k).map(|l| (a0 + k + 1, (*l).to_owned()));
            let right = b.get(k).map(|l| (b0 + k + 1, (*l).to_owned()));
            let change = match (&left, &right) {
                (Some(_), Some(_)) => Change::Changed,
                (Some(_), None) => Change::Removed,
                _ => Change::Added,
            };
            Row {
                left,
                right,
                change,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(rows: &[Row]) -> Vec<(Change, Option<usize>, Option<usize>)> {
        rows.iter()
            .map(|r| {
                (
                    r.change,
                    r.left.as_ref().map(|l| l.0),
                    r.right.as_ref().map(|r| r.0),
                )
            })
            .collect()
    }

    #[test]
    fn a_changed_line_pairs_and_an_added_one_stands_alone() {
        let left = "spec:\n  image: web:v1\n  port: 80\n";
        let right = "spec:\n  image: web:v2\n  port: 80\n  env: prod\n";
        let rows = side_by_side(left, right);
        assert_eq!(
            changes(&rows),
            vec![
                (Change::Same, Some(1), Some(1)),
                (Change::Changed, Some(2), Some(2)),
                (Change::Same, Some(3), Some(3)),
                (Change::Added, None, Some(4)),
            ]
        );
        assert_eq!(rows[1].right.as_ref().unwrap().1, "  image: web:v2");
    }

    #[test]
    fn identical_texts_have_no_changes_and_removals_show_on_the_left() {
        let text = "a\nb\nc\n";
        assert!(side_by_side(text, text)
            .iter()
            .all(|r| r.change == Change::Same));
        assert_eq!(
            changes(&side_by_side("a\nb\nc\n", "a\nc\n")),
            vec![
                (Change::Same, Some(1), Some(1)),
                (Change::Removed, Some(2), None),
                (Change::Same, Some(3), Some(2)),
            ]
        );
        assert!(side_by_side("", "").is_empty());
    }
}
