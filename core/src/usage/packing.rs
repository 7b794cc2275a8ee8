//! Packing JSON rows into arrays of bounded size, each bound to one D1 parameter and inserted
//! with `json_each`: D1 refuses a string value over 1,000,000 bytes, so a flush of many large
//! rows is split into as many arrays (statements) as that limit needs.

/// D1's largest string, BLOB or row: 1,000,000 bytes
/// (<https://developers.cloudflare.com/d1/platform/limits/>).
pub const D1_VALUE_LIMIT: usize = 1_000_000;

/// Rows packed into JSON arrays, in their order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Packed {
    /// Each a JSON array (`[row,row,...]`) of at most the limit's bytes.
    pub arrays: Vec<String>,
    /// Indices of the rows that alone exceed the limit (in no array: they cannot be stored).
    pub oversized: Vec<usize>,
}

/// Whether a row of `row_bytes` fits an array of at most `max_bytes` bytes alone (`[` + row +
/// `]`): one that does not can never be stored.
pub fn fits_alone(row_bytes: usize, max_bytes: usize) -> bool {
    row_bytes + 2 <= max_bytes
}

/// Packs `rows` (each one serialized JSON value) greedily, in order, into JSON arrays of at
/// most `max_bytes` bytes each. A row that cannot fit even alone (`[` + row + `]`) is left out
/// and reported in `oversized`.
pub fn pack_json_arrays(rows: &[String], max_bytes: usize) -> Packed {
    let mut packed = Packed::default();
    let mut current = String::new();
    for (i, row) in rows.iter().enumerate() {
        if !fits_alone(row.len(), max_bytes) {
            packed.oversized.push(i);
            continue;
        }
        // Adding this row costs its bytes plus a comma (or the opening bracket) and the
        // closing bracket.
        if !current.is_empty() && current.len() + 1 + row.len() + 1 > max_bytes {
            current.push(']');
            packed.arrays.push(std::mem::take(&mut current));
        }
        current.push(if current.is_empty() { '[' } else { ',' });
        current.push_str(row);
    }
    if !current.is_empty() {
        current.push(']');
        packed.arrays.push(current);
    }
    packed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn rows(sizes: &[usize]) -> Vec<String> {
        sizes
            .iter()
            .map(|n| serde_json::to_string(&"x".repeat(*n)).unwrap())
            .collect()
    }

    #[test]
    fn small_rows_make_one_array() {
        let p = pack_json_arrays(&rows(&[1, 2, 3]), 1000);
        assert_eq!(p.arrays, vec![r#"["x","xx","xxx"]"#.to_string()]);
        assert!(p.oversized.is_empty());
    }

    #[test]
    fn no_rows_make_no_array() {
        assert_eq!(pack_json_arrays(&[], 10), Packed::default());
    }

    #[test]
    fn an_array_exactly_at_the_limit_is_kept_one_byte_over_is_split() {
        // ["x","x"] is 9 bytes.
        let r = rows(&[1, 1]);
        assert_eq!(pack_json_arrays(&r, 9).arrays.len(), 1);
        assert_eq!(pack_json_arrays(&r, 8).arrays, vec![r#"["x"]"#, r#"["x"]"#]);
    }

    #[test]
    fn a_row_over_the_limit_alone_is_reported_and_the_others_are_kept() {
        let p = pack_json_arrays(&rows(&[1, 50, 2]), 20);
        assert_eq!(p.oversized, vec![1]);
        assert_eq!(p.arrays, vec![r#"["x","xx"]"#.to_string()]);
    }

    #[test]
    fn the_d1_limit_splits_two_hundred_large_answers() {
        let p = pack_json_arrays(&rows(&[60_000; 200]), D1_VALUE_LIMIT);
        assert!(p.arrays.len() >= 12, "{} arrays", p.arrays.len());
        assert!(p.arrays.iter().all(|a| a.len() <= D1_VALUE_LIMIT));
        let total: usize = p
            .arrays
            .iter()
            .map(|a| serde_json::from_str::<Vec<Value>>(a).unwrap().len())
            .sum();
        assert_eq!(total, 200);
    }

    proptest! {
        /// Every array is valid JSON within the limit, and the arrays hold exactly the rows
        /// that fit, in order; the others are reported.
        #[test]
        fn packing_keeps_every_fitting_row_in_order(
            sizes in proptest::collection::vec(0usize..300, 0..60),
            max in 4usize..700,
        ) {
            let input = rows(&sizes);
            let p = pack_json_arrays(&input, max);
            let mut kept = Vec::new();
            for a in &p.arrays {
                prop_assert!(a.len() <= max);
                let values: Vec<Value> = serde_json::from_str(a).unwrap();
                prop_assert!(!values.is_empty());
                kept.extend(values.into_iter().map(|v| v.to_string()));
            }
            let expected: Vec<String> = input
                .iter()
                .enumerate()
                .filter(|(i, _)| !p.oversized.contains(i))
                .map(|(_, r)| r.clone())
                .collect();
            prop_assert_eq!(kept, expected);
            for i in &p.oversized {
                prop_assert!(input[*i].len() + 2 > max);
            }
        }
    }
}
