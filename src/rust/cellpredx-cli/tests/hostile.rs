//! Hostile and degenerate input to the command-line tool: each gets a failing status with a
//! message that names the input, never a panic (status 101) or a crash (a signal).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cellpredx<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellpredx")).args(args).output().expect("runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cellpredx-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Failed the ordinary way (status 1), with `needle` in its message.
fn fails_naming(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "status {:?}: {stderr}", out.status);
    assert!(stderr.starts_with("cellpredx: error: "), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

const HOSTILE: [&str; 6] = ["{Sys.setenv(PWNED = 'x')}", "gene{", "it's \"quoted\"", "two\nlines", "%s%n%x", "ünïcødé"];

/// Two separable types over `genes` genes as a MatrixMarket dataset with metadata.
fn write_toy(dir: &Path, cells: usize, genes: usize, depth: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let mut entries = Vec::new();
    for c in 0..cells {
        for g in 0..genes {
            let high = (g < genes / 2) == (c % 2 == 0);
            let value = if high { 2 * depth + ((c * 7 + g * 3) % 3) as u32 } else { ((c + g) % 5 == 0) as u32 };
            if value > 0 {
                entries.push(format!("{} {} {value}", g + 1, c + 1));
            }
        }
    }
    let header = format!("%%MatrixMarket matrix coordinate integer general\n{genes} {cells} {}\n", entries.len());
    std::fs::write(dir.join("matrix.mtx"), header + &entries.join("\n") + "\n").unwrap();
    let features: Vec<String> = (0..genes).map(|g| format!("gene{g}")).collect();
    std::fs::write(dir.join("features.tsv"), features.join("\n") + "\n").unwrap();
    let barcodes: Vec<String> = (0..cells).map(|c| format!("cell{c}")).collect();
    std::fs::write(dir.join("barcodes.tsv"), barcodes.join("\n") + "\n").unwrap();
    let meta: Vec<String> = (0..cells).map(|c| format!("cell{c}\t{}", if c % 2 == 0 { "T" } else { "B" })).collect();
    std::fs::write(dir.join("metadata.tsv"), format!("cell_id\tcell_type\n{}\n", meta.join("\n"))).unwrap();
}

#[test]
fn more_threads_than_cores_are_capped_and_said() {
    let out = cellpredx(&["--threads", "1000", "info", "--json"]);
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let threads = info["threads"].as_u64().unwrap();
    assert!((1..1000).contains(&threads));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("--threads 1000 is more than the {threads} cores")), "{stderr}");
}

#[test]
fn hostile_paths_and_file_content_are_reported() {
    let dir = scratch("paths");
    for text in HOSTILE {
        let missing = dir.join(text);
        let out = cellpredx(&[
            "transfer".as_ref(), "--ref".as_ref(), missing.as_os_str(), "--query".as_ref(), missing.as_os_str(),
            "--scenario".as_ref(), "rna_rna".as_ref(), "--out".as_ref(), dir.join("out").as_os_str(),
        ]);
        fails_naming(&out, text);
        // In the matrix file: the line is quoted back.
        let data = dir.join("data");
        write_toy(&data, 4, 120, 1);
        std::fs::write(data.join("matrix.mtx"), format!("%%MatrixMarket matrix coordinate real general\n120 4 1\n1 1 {text}\n")).unwrap();
        let out = cellpredx(&["transfer".as_ref(), "--ref".as_ref(), data.as_os_str(), "--query".as_ref(), data.as_os_str(), "--scenario".as_ref(), "rna_rna".as_ref(), "--out".as_ref(), dir.join("out").as_os_str()]);
        fails_naming(&out, "line 3");
    }
    // Bytes that are not UTF-8 in a path.
    use std::os::unix::ffi::OsStrExt;
    let bytes = dir.join(std::ffi::OsStr::from_bytes(b"g\xe9{}"));
    let out = cellpredx(&["transfer".as_ref(), "--ref".as_ref(), bytes.as_os_str(), "--query".as_ref(), bytes.as_os_str(), "--scenario".as_ref(), "rna_rna".as_ref(), "--out".as_ref(), dir.join("out").as_os_str()]);
    fails_naming(&out, "does not exist");
}

#[test]
fn an_output_path_that_cannot_take_results_fails_before_any_reading() {
    let dir = scratch("out");
    let file = dir.join("results.txt");
    std::fs::write(&file, "not a directory").unwrap();
    // The reference does not exist either: the --out error must come first.
    let missing = dir.join("no-such-dataset");
    let out = cellpredx(&["transfer".as_ref(), "--ref".as_ref(), missing.as_os_str(), "--query".as_ref(), missing.as_os_str(), "--scenario".as_ref(), "rna_rna".as_ref(), "--out".as_ref(), file.as_os_str()]);
    fails_naming(&out, "--out");
    fails_naming(&out, "is a file, not a directory");
    let out = cellpredx(&[
        "transfer".as_ref(), "--ref".as_ref(), missing.as_os_str(), "--query".as_ref(), missing.as_os_str(),
        "--scenario".as_ref(), "rna_rna".as_ref(), "--out".as_ref(), dir.join("ok").as_os_str(), "--save-model".as_ref(), file.as_os_str(),
    ]);
    fails_naming(&out, "--save-model");
}

#[test]
fn a_saved_model_with_forged_sizes_is_refused_by_predict() {
    let dir = scratch("model");
    let (data, model, out) = (dir.join("data"), dir.join("model"), dir.join("out"));
    write_toy(&data, 40, 120, 2);
    let run = cellpredx(&[
        "--threads".as_ref(), "1".as_ref(), "transfer".as_ref(), "--ref".as_ref(), data.as_os_str(), "--query".as_ref(), data.as_os_str(),
        "--scenario".as_ref(), "rna_rna".as_ref(), "--max-steps".as_ref(), "3".as_ref(), "--out".as_ref(), out.as_os_str(),
        "--save-model".as_ref(), model.as_os_str(), "--quiet".as_ref(), "--device".as_ref(), "cpu".as_ref(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    // Saving again into the same directory needs --overwrite-model.
    let again = cellpredx(&[
        "--threads".as_ref(), "1".as_ref(), "transfer".as_ref(), "--ref".as_ref(), data.as_os_str(), "--query".as_ref(), data.as_os_str(),
        "--scenario".as_ref(), "rna_rna".as_ref(), "--max-steps".as_ref(), "3".as_ref(), "--out".as_ref(), out.as_os_str(),
        "--save-model".as_ref(), model.as_os_str(), "--quiet".as_ref(),
    ]);
    fails_naming(&again, "already holds a model");
    let description: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model.join("model.json")).unwrap()).unwrap();
    type Forgery<'a> = (&'a str, &'a dyn Fn(&mut serde_json::Value));
    let forgeries: [Forgery; 4] = [
        ("shape.embedding_dim is 1000000000", &|d| d["shape"]["embedding_dim"] = 1_000_000_000.into()),
        ("shape.reference_cells is 10000000", &|d| d["shape"]["reference_cells"] = 10_000_000.into()),
        ("threshold must be between 0 and 1, not 5", &|d| d["threshold"] = 5.into()),
        ("need", &|d| d["shape"]["context_dim"] = 4000.into()),
    ];
    for (needle, forge) in forgeries {
        let mut forged = description.clone();
        forge(&mut forged);
        std::fs::write(model.join("model.json"), forged.to_string()).unwrap();
        let out = cellpredx(&["predict".as_ref(), "--model".as_ref(), model.as_os_str(), "--query".as_ref(), data.as_os_str(), "--out".as_ref(), out.as_os_str()]);
        fails_naming(&out, needle);
    }
}
