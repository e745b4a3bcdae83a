//! The directory layout CellRanger and `Seurat::Read10X` use: `matrix.mtx(.gz)` holds features ×
//! cells in MatrixMarket coordinate format, `features.tsv` (or `genes.tsv`) names its rows and
//! `barcodes.tsv` its columns.

use super::{csr_from_triplets, find_in_dir, make_unique, read_maybe_gzip, thousands, Dataset};
use crate::error::{CellPredXError, Result};
use std::path::Path;

pub(super) fn read_mtx_dir(dir: &Path) -> Result<Dataset> {
    let missing = |what: &str| CellPredXError::invalid(format!("{} has no {what}", dir.display()));
    let matrix_path = find_in_dir(dir, &["matrix.mtx.gz", "matrix.mtx"]).ok_or_else(|| missing("matrix.mtx(.gz)"))?;
    let features_path = find_in_dir(dir, &["features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"])
        .ok_or_else(|| missing("features.tsv(.gz) or genes.tsv(.gz)"))?;
    let barcodes_path =
        find_in_dir(dir, &["barcodes.tsv.gz", "barcodes.tsv"]).ok_or_else(|| missing("barcodes.tsv(.gz)"))?;

    let in_matrix_file = |msg: String| CellPredXError::invalid(format!("{}: {msg}", matrix_path.display()));
    let entries = parse_coordinate(&read_maybe_gzip(&matrix_path)?).map_err(in_matrix_file)?;
    let features = make_unique(read_name_column(&features_path, NameColumn::Symbol)?);
    let cells = read_name_column(&barcodes_path, NameColumn::First)?;
    for (names, path, count, what) in
        [(&features, &features_path, entries.n_features, "rows"), (&cells, &barcodes_path, entries.n_cells, "columns")]
    {
        if names.len() != count {
            return Err(CellPredXError::invalid(format!(
                "{} has {} lines but {} has {} {what} (features × cells)",
                path.display(),
                thousands(names.len()),
                matrix_path.display(),
                thousands(count)
            )));
        }
    }
    let matrix =
        csr_from_triplets(entries.n_cells, entries.n_features, &entries.cells, &entries.features, &entries.values)
            .map_err(in_matrix_file)?;
    Ok(Dataset { matrix, features, cells })
}

/// The entries of a features × cells MatrixMarket file, 0-based and checked against its size.
struct Entries {
    n_features: usize,
    n_cells: usize,
    features: Vec<u32>,
    cells: Vec<u32>,
    values: Vec<f32>,
}

#[derive(Clone, Copy, PartialEq)]
enum Field {
    Real,
    Integer,
    Pattern,
}

fn parse_coordinate(bytes: &[u8]) -> std::result::Result<Entries, String> {
    let mut lines =
        bytes.split(|&b| b == b'\n').enumerate().map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)));
    let field = parse_header(lines.next().map_or(&[][..], |(_, line)| line))?;
    let mut content = lines.filter(|(_, line)| !line.starts_with(b"%") && !line.iter().all(u8::is_ascii_whitespace));

    let (size_line, size) = content.next().ok_or("the size line (rows, columns, entries) is missing")?;
    let size: Vec<u64> =
        tokens(size).map(parse_index).collect::<Option<Vec<u64>>>().filter(|s| s.len() == 3).ok_or_else(|| {
            format!(
                "line {size_line} should hold the number of rows, columns and entries, holds '{}'",
                String::from_utf8_lossy(size)
            )
        })?;
    let too_large = |n: u64| n > u64::from(u32::MAX);
    if too_large(size[0]) || too_large(size[1]) {
        return Err(format!(
            "line {size_line}: {} × {} is too large (at most 2^32 - 1 rows and columns)",
            size[0], size[1]
        ));
    }
    let (n_features, n_cells, declared) = (size[0] as usize, size[1] as usize, size[2]);

    // The declared count comes from the file, so it only bounds the reservation: every entry
    // takes at least four bytes ("1 1\n").
    let capacity = (declared as usize).min(bytes.len() / 4);
    let mut entries = Entries {
        n_features,
        n_cells,
        features: Vec::with_capacity(capacity),
        cells: Vec::with_capacity(capacity),
        values: Vec::with_capacity(capacity),
    };
    for (line_number, line) in content {
        if entries.values.len() as u64 == declared {
            return Err(format!(
                "line {line_number}: more entries than the {} declared in the size line",
                thousands(declared as usize)
            ));
        }
        let bad_line = || {
            let expected = if field == Field::Pattern { "row and column" } else { "row, column and value" };
            format!("line {line_number} should hold {expected}, holds '{}'", String::from_utf8_lossy(line))
        };
        let mut fields = tokens(line);
        let (Some(row), Some(col)) = (fields.next().and_then(parse_index), fields.next().and_then(parse_index)) else {
            return Err(bad_line());
        };
        let value = match field {
            Field::Pattern => 1.0,
            Field::Integer | Field::Real => fields.next().and_then(parse_value).ok_or_else(bad_line)?,
        };
        if fields.next().is_some() {
            return Err(bad_line());
        }
        if row == 0 || col == 0 || row > n_features as u64 || col > n_cells as u64 {
            return Err(format!(
                "line {line_number}: entry ({row}, {col}) is outside the declared {} × {} matrix (indices start at 1)",
                thousands(n_features),
                thousands(n_cells)
            ));
        }
        entries.features.push((row - 1) as u32);
        entries.cells.push((col - 1) as u32);
        entries.values.push(value);
    }
    if entries.values.len() as u64 != declared {
        return Err(format!(
            "the size line declares {} entries but the file has {}; it may be truncated",
            thousands(declared as usize),
            thousands(entries.values.len())
        ));
    }
    Ok(entries)
}

fn parse_header(line: &[u8]) -> std::result::Result<Field, String> {
    let header = String::from_utf8_lossy(line).to_ascii_lowercase();
    let words: Vec<&str> = header.split_ascii_whitespace().collect();
    if words.first() != Some(&"%%matrixmarket") || words.get(1) != Some(&"matrix") || words.len() != 5 {
        return Err(format!(
            "not a MatrixMarket file: the first line should be '%%MatrixMarket matrix coordinate real general', is '{}'",
            String::from_utf8_lossy(line)
        ));
    }
    if words[2] != "coordinate" {
        return Err(format!("'{}' MatrixMarket files are not supported; expected 'coordinate' (sparse)", words[2]));
    }
    if words[4] != "general" {
        return Err(format!("'{}' MatrixMarket matrices are not supported; expected 'general'", words[4]));
    }
    match words[3] {
        "real" | "double" => Ok(Field::Real),
        "integer" => Ok(Field::Integer),
        "pattern" => Ok(Field::Pattern),
        other => Err(format!("'{other}' values are not supported; expected real, integer or pattern")),
    }
}

fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| *b == b' ' || *b == b'\t').filter(|t| !t.is_empty())
}

fn parse_index(token: &[u8]) -> Option<u64> {
    if token.is_empty() || token.len() > 19 || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(token.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Counts are nearly always small integers, which this reads without the general float parser.
fn parse_value(token: &[u8]) -> Option<f32> {
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    if !digits.is_empty() && digits.len() <= 9 && digits.iter().all(u8::is_ascii_digit) {
        let magnitude = digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) as f32;
        return Some(if digits.len() < token.len() { -magnitude } else { magnitude });
    }
    std::str::from_utf8(token).ok()?.parse::<f32>().ok()
}

#[derive(Clone, Copy)]
enum NameColumn {
    First,
    /// The gene symbol where the file has one: 10x writes `id, symbol[, type]`.
    Symbol,
}

/// One name per line: blank lines at the end are ignored, blank lines inside are refused.
fn read_name_column(path: &Path, column: NameColumn) -> Result<Vec<String>> {
    let bytes = read_maybe_gzip(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CellPredXError::invalid(format!("{} is not UTF-8 text", path.display())))?;
    let mut lines: Vec<&str> = text.lines().collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let index = match column {
        NameColumn::Symbol if lines.first().is_some_and(|l| l.contains('\t')) => 1,
        _ => 0,
    };
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| match line.split('\t').nth(index) {
            Some(name) if !name.trim().is_empty() => Ok(name.to_string()),
            _ => Err(CellPredXError::invalid(format!(
                "{}: line {} has no name in column {}",
                path.display(),
                i + 1,
                index + 1
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::scratch_dir;
    use super::*;
    use crate::sparse::CsrMatrix;
    use std::io::Write;

    // Features × cells in the file:   cells × features after reading:
    //   [[1, 0, 0, 4],                  [[1, 0, 2],
    //    [0, 0, 3, 0],                   [0, 0, 0],
    //    [2, 0, 0, 5]]                   [0, 3, 0],
    //                                    [4, 0, 5]]
    const ENTRIES_SORTED: &str = "1 1 1\n3 1 2\n2 3 3\n1 4 4\n3 4 5\n";
    const ENTRIES_SHUFFLED: &str = "3 4 5\n2 3 3\n1 1 1\n1 4 4\n3 1 2\n";

    fn expected() -> CsrMatrix {
        CsrMatrix::try_new(4, 3, vec![0, 2, 2, 3, 5], vec![0, 2, 1, 0, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap()
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    }

    fn write_dir(name: &str, matrix: &str, features: &str, gzipped: bool) -> std::path::PathBuf {
        let dir = scratch_dir(name);
        if gzipped {
            std::fs::write(dir.join("matrix.mtx.gz"), gzip(matrix)).unwrap();
            std::fs::write(dir.join("features.tsv.gz"), gzip(features)).unwrap();
        } else {
            std::fs::write(dir.join("matrix.mtx"), matrix).unwrap();
            std::fs::write(dir.join("features.tsv"), features).unwrap();
        }
        std::fs::write(dir.join("barcodes.tsv"), "c1\nc2\nc3\nc4\n").unwrap();
        dir
    }

    fn mtx(field: &str, entries: &str) -> String {
        format!("%%MatrixMarket matrix coordinate {field} general\n% written by a test\n3 4 5\n{entries}")
    }

    fn error_of(dir: &Path) -> String {
        let err = read_mtx_dir(dir).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        err
    }

    #[test]
    fn plain_and_gzipped_directories_give_the_same_matrix() {
        for gzipped in [false, true] {
            let dir = write_dir("mtx", &mtx("integer", ENTRIES_SORTED), "g1\ng2\ng3\n", gzipped);
            let dataset = read_mtx_dir(&dir).unwrap();
            assert_eq!(dataset.matrix, expected());
            assert_eq!(dataset.features, ["g1", "g2", "g3"]);
            assert_eq!(dataset.cells, ["c1", "c2", "c3", "c4"]);
        }
    }

    #[test]
    fn entries_in_any_order_and_real_values_are_read() {
        let dir = write_dir(
            "mtx-shuffled",
            &mtx("real", &ENTRIES_SHUFFLED.replace(" 5\n", " 5.0e0\n")),
            "g1\ng2\ng3\n",
            false,
        );
        assert_eq!(read_mtx_dir(&dir).unwrap().matrix, expected());
        let dir = write_dir("mtx-crlf", &mtx("integer", ENTRIES_SHUFFLED).replace('\n', "\r\n"), "g1\ng2\ng3\n", false);
        assert_eq!(read_mtx_dir(&dir).unwrap().matrix, expected());
    }

    #[test]
    fn pattern_matrices_hold_ones() {
        let dir = write_dir(
            "mtx-pattern",
            "%%MatrixMarket matrix coordinate pattern general\n3 4 2\n1 1\n3 4\n",
            "a\nb\nc\n",
            false,
        );
        let m = read_mtx_dir(&dir).unwrap().matrix;
        assert_eq!(m, CsrMatrix::try_new(4, 3, vec![0, 1, 1, 1, 2], vec![0, 2], vec![1.0, 1.0]).unwrap());
    }

    #[test]
    fn tenx_feature_files_give_unique_symbols() {
        let features = "ENSG1\tTBCE\tGene Expression\nENSG2\tTBCE\tGene Expression\nENSG3\tCD3E\tGene Expression\n";
        let dir = write_dir("mtx-10x", &mtx("integer", ENTRIES_SORTED), features, true);
        assert_eq!(read_mtx_dir(&dir).unwrap().features, ["TBCE", "TBCE.1", "CD3E"]);
    }

    #[test]
    fn mismatched_name_counts_name_both_files_and_numbers() {
        let dir = write_dir("mtx-features", &mtx("integer", ENTRIES_SORTED), "g1\ng2\n", false);
        let err = error_of(&dir);
        assert!(err.contains("features.tsv has 2 lines but") && err.contains("matrix.mtx has 3 rows"), "{err}");
        std::fs::write(dir.join("features.tsv"), "g1\ng2\ng3\n").unwrap();
        std::fs::write(dir.join("barcodes.tsv"), "c1\n").unwrap();
        let err = error_of(&dir);
        assert!(err.contains("barcodes.tsv has 1 lines but") && err.contains("has 4 columns"), "{err}");
    }

    #[test]
    fn malformed_files_are_refused_with_the_line() {
        let cases = [
            ("%%MatrixMarket matrix array real general\n3 4\n", "'array' MatrixMarket files are not supported"),
            ("%%MatrixMarket matrix coordinate real symmetric\n3 4 0\n", "'symmetric' MatrixMarket matrices"),
            ("%%MatrixMarket matrix coordinate complex general\n3 4 0\n", "'complex' values"),
            ("1 1 1\n", "not a MatrixMarket file"),
            ("%%MatrixMarket matrix coordinate integer general\n3 4\n", "line 2 should hold the number of rows"),
            (
                "%%MatrixMarket matrix coordinate integer general\n3 4 2\n1 1 1\n2 x 1\n",
                "line 4 should hold row, column and value",
            ),
            ("%%MatrixMarket matrix coordinate integer general\n3 4 2\n1 1 1\n2 2\n", "line 4 should hold"),
            ("%%MatrixMarket matrix coordinate integer general\n3 4 1\n1 1 1 1\n", "line 3 should hold"),
            (
                "%%MatrixMarket matrix coordinate integer general\n3 4 1\n4 1 1\n",
                "line 3: entry (4, 1) is outside the declared 3 × 4 matrix",
            ),
            ("%%MatrixMarket matrix coordinate integer general\n3 4 1\n0 1 1\n", "entry (0, 1) is outside"),
            (
                "%%MatrixMarket matrix coordinate integer general\n3 4 1\n1 1 1\n2 2 2\n",
                "line 4: more entries than the 1 declared",
            ),
            (
                "%%MatrixMarket matrix coordinate integer general\n3 4 3\n1 1 1\n2 2 2\n",
                "declares 3 entries but the file has 2",
            ),
            (
                "%%MatrixMarket matrix coordinate integer general\n3 4 2\n2 3 1\n2 3 2\n",
                "feature 2 of cell 3 is stored more than once",
            ),
        ];
        for (matrix, expected) in cases {
            let dir = write_dir("mtx-bad", matrix, "g1\ng2\ng3\n", false);
            let err = error_of(&dir);
            assert!(err.contains("matrix.mtx: ") && err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn missing_files_are_named() {
        let dir = write_dir("mtx-missing", &mtx("integer", ENTRIES_SORTED), "g1\ng2\ng3\n", false);
        std::fs::remove_file(dir.join("barcodes.tsv")).unwrap();
        assert!(error_of(&dir).ends_with("has no barcodes.tsv(.gz)"));
        std::fs::remove_file(dir.join("matrix.mtx")).unwrap();
        assert!(error_of(&dir).ends_with("has no matrix.mtx(.gz)"));
        std::fs::write(dir.join("matrix.mtx.gz"), b"\x1f\x8bnot gzip").unwrap();
        std::fs::write(dir.join("barcodes.tsv"), "c1\n").unwrap();
        assert!(error_of(&dir).contains("is not valid gzip"));
    }
}
