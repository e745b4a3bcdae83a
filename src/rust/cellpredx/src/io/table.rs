//! Tab-separated tables with a header line: cell metadata in, predictions out.

use super::read_maybe_gzip;
use crate::error::{CellPredXError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Where the table came from, for error messages.
    pub path: PathBuf,
}

impl Table {
    /// The values of one column, top to bottom.
    pub fn column(&self, name: &str) -> Result<Vec<&str>> {
        let Some(index) = self.columns.iter().position(|c| c == name) else {
            return Err(CellPredXError::invalid(format!(
                "{} has no column '{name}'; its columns are: {}",
                self.path.display(),
                self.columns.join(", ")
            )));
        };
        Ok(self.rows.iter().map(|row| row.get(index).map_or("", String::as_str)).collect())
    }
}

/// Reads a tab-separated table (plain or gzip) whose first line names the columns. Every row
/// must have as many fields as the header; blank lines at the end are ignored.
pub fn read_table(path: &Path) -> Result<Table> {
    let bytes = read_maybe_gzip(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CellPredXError::invalid(format!("{} is not UTF-8 text", path.display())))?;
    let mut lines = text.lines();
    let columns: Vec<String> = match lines.next() {
        Some(header) if !header.trim().is_empty() => header.split('\t').map(str::to_string).collect(),
        _ => {
            return Err(CellPredXError::invalid(format!(
                "{} is empty; expected a header line with tab-separated column names",
                path.display()
            )))
        }
    };
    let mut rows: Vec<Vec<String>> = lines.map(|line| line.split('\t').map(str::to_string).collect()).collect();
    while rows.last().is_some_and(|row| row.len() == 1 && row[0].trim().is_empty()) {
        rows.pop();
    }
    if let Some((i, row)) = rows.iter().enumerate().find(|(_, row)| row.len() != columns.len()) {
        return Err(CellPredXError::invalid(format!(
            "{}: line {} has {} tab-separated fields but the header has {}",
            path.display(),
            i + 2,
            row.len(),
            columns.len()
        )));
    }
    Ok(Table { columns, rows, path: path.to_path_buf() })
}

/// Writes a tab-separated table with a header line, gzip-compressed when the name ends in `.gz`.
/// Fields holding tabs or line breaks are refused, as they would shift or split the row.
pub fn write_table(path: &Path, header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<()> {
    let io_error = |e| CellPredXError::io(format!("cannot write {}", path.display()), e);
    let file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io_error)?);
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        write_rows(&mut gz, path, header, rows)?;
        // Dropping the encoder would finish the stream too, but swallow a failure to do so.
        gz.finish().and_then(|mut file| file.flush()).map_err(io_error)
    } else {
        let mut file = file;
        write_rows(&mut file, path, header, rows)?;
        file.flush().map_err(io_error)
    }
}

fn write_rows(
    out: &mut impl Write,
    path: &Path,
    header: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) -> Result<()> {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for (i, row) in std::iter::once(header).chain(rows).enumerate() {
        if let Some(bad) = row.iter().find(|f| f.contains(['\t', '\n', '\r'])) {
            return Err(CellPredXError::invalid(format!(
                "{}: line {} would hold a field with a tab or line break ({bad:?})",
                path.display(),
                i + 1
            )));
        }
        writeln!(out, "{}", row.join("\t"))
            .map_err(|e| CellPredXError::io(format!("cannot write {}", path.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::scratch_dir;
    use super::*;

    #[test]
    fn written_tables_read_back_plain_and_gzipped() {
        let dir = scratch_dir("table");
        for name in ["predictions.tsv", "predictions.tsv.gz"] {
            let path = dir.join(name);
            let rows = vec![vec!["c1".to_string(), "T cell".to_string()], vec!["c2".to_string(), "".to_string()]];
            write_table(&path, &["cell_id", "cell_type"], rows.clone().into_iter()).unwrap();
            let table = read_table(&path).unwrap();
            assert_eq!(table.columns, ["cell_id", "cell_type"]);
            assert_eq!(table.rows, rows);
            assert_eq!(table.column("cell_type").unwrap(), ["T cell", ""]);
        }
        let gz = std::fs::read(dir.join("predictions.tsv.gz")).unwrap();
        assert!(gz.starts_with(&[0x1f, 0x8b]));
    }

    #[test]
    fn windows_line_ends_and_trailing_blank_lines_are_accepted() {
        let path = scratch_dir("crlf").join("m.tsv");
        std::fs::write(&path, "id\tx\r\na\t1\r\n\n\n").unwrap();
        let table = read_table(&path).unwrap();
        assert_eq!(table.rows, [["a", "1"]]);
    }

    #[test]
    fn ragged_rows_and_unsafe_fields_are_refused() {
        let dir = scratch_dir("ragged");
        let path = dir.join("m.tsv");
        std::fs::write(&path, "id\tx\na\t1\nb\n").unwrap();
        let err = read_table(&path).unwrap_err().to_string();
        assert!(err.ends_with("m.tsv: line 3 has 1 tab-separated fields but the header has 2"), "{err}");
        std::fs::write(&path, "").unwrap();
        assert!(read_table(&path).unwrap_err().to_string().contains("is empty"));
        let err = write_table(&path, &["a"], std::iter::once(vec!["x\ty".to_string()])).unwrap_err().to_string();
        assert!(err.contains("line 2 would hold a field with a tab"), "{err}");
        let err = read_table(&dir.join("absent.tsv")).unwrap_err().to_string();
        assert!(err.starts_with("cannot read") && err.contains("absent.tsv"), "{err}");
    }
}
