//! `cellpredx transfer` and `evaluate` end to end on a real pair (scClassify's pancreas: Xin →
//! Wang, benchmark pair P6), kept short with few training steps.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cellpredx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellpredx")).args(args).output().expect("runs")
}

fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("CELLPREDX_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/data"));
    if dir.join("scclassify_pancreas_xin_wang").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: no shared data at {} (set CELLPREDX_DATA)", dir.display());
        None
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cellpredx-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn transfer(reference: &Path, query: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--threads", "2", "transfer", "--ref", s(reference), "--query", s(query), "--scenario", "rna_rna", "--out", s(out), "--quiet", "--device", "cpu"];
    args.extend_from_slice(extra);
    cellpredx(&args)
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A failure is one line on stderr, "cellpredx: error: …", with status 1.
fn one_line_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(stderr.starts_with("cellpredx: error: ") && stderr.lines().count() == 1, "{stderr}");
    stderr
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn transfer_writes_what_evaluate_scores() {
    let Some(data) = shared_data() else { return };
    let pancreas = data.join("scclassify_pancreas_xin_wang");
    let out = scratch("p6");
    assert_ok(&transfer(&pancreas.join("xin"), &pancreas.join("wang"), &out, &["--max-steps", "150"]));

    let predictions = std::fs::read_to_string(out.join("predictions.tsv")).unwrap();
    let header: Vec<&str> = predictions.lines().next().unwrap().split('\t').collect();
    assert_eq!(&header[..8], ["cell", "label", "best_type", "confidence", "log_doubt", "prototype_similarity", "reference_distance", "novelty"]);
    assert_eq!(header[8..].len(), 4, "one probability column per reference type: {header:?}");
    assert_eq!(predictions.lines().count(), 1 + 501);
    let embedding = std::fs::read_to_string(out.join("embedding.tsv")).unwrap();
    assert_eq!(embedding.lines().count(), 1 + 501);
    // Three networks by default: their embeddings side by side, their histories one after another.
    assert_eq!(embedding.lines().nth(1).unwrap().split('\t').count(), 1 + 3 * 64);
    let history = std::fs::read_to_string(out.join("history.tsv")).unwrap();
    assert_eq!(history.lines().count(), 1 + 3 * 150);
    assert!(history.starts_with("network\tstep\t") && history.lines().last().unwrap().starts_with("3\t150\t"), "{}", history.lines().last().unwrap());
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["steps"], 450);
    assert_eq!(run["networks"].as_array().unwrap().iter().map(|r| r["seed"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(run["features"], 219);
    assert_eq!(run["scaled"], true);

    let eval = cellpredx(&["evaluate", "--pred", s(&out.join("predictions.tsv")), "--truth", s(&pancreas.join("wang")), "--json"]);
    assert_ok(&eval);
    let scores: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    // Wang has 355 cells of Xin's four types and 146 of three types Xin lacks.
    assert_eq!(scores["scored_cells"], 355);
    assert_eq!(scores["novel_cells"], 146);
    assert!(scores["accuracy"].as_f64().unwrap() > 0.9, "{scores}");
    assert!(scores["auroc"].as_f64().unwrap() > 0.8, "{scores}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn query_labels_cannot_change_the_result() {
    let Some(data) = shared_data() else { return };
    let pancreas = data.join("scclassify_pancreas_xin_wang");
    let root = scratch("leak");
    // The same query three times: with its labels, with the labels shuffled, without metadata.
    let (with, shuffled, without) = (root.join("with"), root.join("shuffled"), root.join("without"));
    for dir in [&with, &shuffled, &without] {
        copy_dir(&pancreas.join("wang"), dir);
    }
    std::fs::remove_file(without.join("metadata.tsv")).unwrap();
    let metadata = std::fs::read_to_string(with.join("metadata.tsv")).unwrap();
    let mut lines: Vec<&str> = metadata.lines().collect();
    let labels: Vec<&str> = lines[1..].iter().rev().map(|l| l.split('\t').nth(1).unwrap()).collect();
    let cells: Vec<String> = lines[1..].iter().zip(&labels).map(|(l, label)| format!("{}\t{label}", l.split('\t').next().unwrap())).collect();
    lines.truncate(1);
    std::fs::write(shuffled.join("metadata.tsv"), format!("{}\n{}\n", lines[0], cells.join("\n"))).unwrap();

    let predictions = |query: &Path, seed: &str| {
        let out = root.join(format!("out-{}-{seed}", query.file_name().unwrap().to_str().unwrap()));
        assert_ok(&transfer(&pancreas.join("xin"), query, &out, &["--max-steps", "40", "--networks", "1", "--seed", seed]));
        std::fs::read(out.join("predictions.tsv")).unwrap()
    };
    let reference = predictions(&with, "3");
    assert_eq!(reference, predictions(&shuffled, "3"));
    assert_eq!(reference, predictions(&without, "3"));
    assert_ne!(reference, predictions(&with, "4"), "another seed should give another model");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let Some(data) = shared_data() else { return };
    let pancreas = data.join("scclassify_pancreas_xin_wang");
    let out = scratch("bad");

    let missing = one_line_error(&transfer(&pancreas.join("nope"), &pancreas.join("wang"), &out, &[]));
    assert!(missing.contains("does not exist") || missing.contains("no matrix.mtx"), "{missing}");

    let mouse = data.join("snareseq_mouse_cortex").join("rna");
    let disjoint = one_line_error(&transfer(&pancreas.join("xin"), &mouse, &out, &[]));
    assert!(disjoint.contains("features are shared"), "{disjoint}");

    let column = one_line_error(&transfer(&pancreas.join("xin"), &pancreas.join("wang"), &out, &["--label-column", "celltype"]));
    assert!(column.contains("no column 'celltype'") && column.contains("cell_type"), "{column}");

    let broken = out.join("broken");
    copy_dir(&pancreas.join("wang"), &broken);
    std::fs::remove_file(broken.join("matrix.mtx.gz")).ok();
    std::fs::write(broken.join("matrix.mtx"), "%%MatrixMarket matrix coordinate real general\n219 501 2\n1 1 1.5\n300 2 1\n").unwrap();
    let malformed = one_line_error(&transfer(&pancreas.join("xin"), &broken, &out, &[]));
    assert!(malformed.contains("matrix.mtx"), "{malformed}");

    let scenario = one_line_error(&cellpredx(&[
        "transfer", "--ref", s(&pancreas.join("xin")), "--query", s(&pancreas.join("wang")), "--scenario", "rna", "--out", s(&out),
    ]));
    assert!(scenario.contains("scenario must be one of"), "{scenario}");

    let threshold = one_line_error(&transfer(&pancreas.join("xin"), &pancreas.join("wang"), &out, &["--threshold", "1.5"]));
    assert!(threshold.contains("threshold must be between 0 and 1, not 1.5"), "{threshold}");
    let networks = one_line_error(&transfer(&pancreas.join("xin"), &pancreas.join("wang"), &out, &["--networks", "0"]));
    assert!(networks.contains("networks must be 1 to 20, not 0"), "{networks}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_saved_model_annotates_the_query_again() {
    let Some(data) = shared_data() else { return };
    let pancreas = data.join("scclassify_pancreas_xin_wang");
    let root = scratch("model");
    let (first, model, second) = (root.join("first"), root.join("model"), root.join("second"));
    assert_ok(&transfer(&pancreas.join("xin"), &pancreas.join("wang"), &first, &["--max-steps", "40", "--save-model", s(&model)]));
    assert!(model.join("model.json").is_file() && model.join("model.safetensors").is_file());
    assert_ok(&cellpredx(&["predict", "--model", s(&model), "--query", s(&pancreas.join("wang")), "--out", s(&second), "--device", "cpu"]));
    assert_eq!(std::fs::read(first.join("predictions.tsv")).unwrap(), std::fs::read(second.join("predictions.tsv")).unwrap());
    let explained = root.join("interpret");
    assert_ok(&cellpredx(&["--threads", "2", "interpret", "--model", s(&model), "--query", s(&pancreas.join("wang")), "--out", s(&explained), "--device", "cpu", "--quiet", "--top", "20", "--per-type", "5"]));
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(explained.join("interpret.json")).unwrap()).unwrap();
    assert_eq!(summary["cells"], 501);
    assert!(summary["completeness_relative_gap"].as_f64().unwrap() < 0.01, "{summary}");
    let determinants = std::fs::read_to_string(explained.join("determinants.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = determinants.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    // Five per predicted type and ranking, ranks 1..=5, features from the model.
    assert!(!rows.is_empty() && rows.len().is_multiple_of(5), "{} rows", rows.len());
    assert!(rows.iter().all(|r| r.len() == 6 && (1..=5).contains(&r[2].parse::<usize>().unwrap())));
    assert!(rows.iter().any(|r| r[1] == "frequency") && rows.iter().any(|r| r[1] == "mean_attribution"));
    let per_cell = std::fs::read_to_string(explained.join("cell_top.tsv")).unwrap();
    assert!(per_cell.lines().count() > 501 && per_cell.lines().count() <= 1 + 501 * 20);
    let threshold = one_line_error(&cellpredx(&["predict", "--model", s(&model), "--query", s(&pancreas.join("wang")), "--out", s(&second), "--threshold=-0.1"]));
    assert!(threshold.contains("threshold must be between 0 and 1, not -0.1"), "{threshold}");
    let bad = one_line_error(&cellpredx(&["interpret", "--model", s(&model), "--query", s(&pancreas.join("wang")), "--out", s(&explained), "--path-space", "sideways"]));
    assert!(bad.contains("--path-space"), "{bad}");
    let missing = one_line_error(&cellpredx(&["predict", "--model", s(&root.join("nope")), "--query", s(&pancreas.join("wang")), "--out", s(&second)]));
    assert!(missing.contains("cannot read the model description"), "{missing}");
    let _ = std::fs::remove_dir_all(&root);
}
