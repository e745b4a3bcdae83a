# CellPredX and its peers on the benchmark pairs of ../shared/BENCHMARKS.md, in one run on one
# machine: for each pair, the CellPredX CLI (one run per seed) then Seurat, SingleR and CellTypist
# (bench/peers/), each as its own process under /usr/bin/time -v (wall seconds, peak memory) and
# each scored by `cellpredx evaluate`. Query labels are read only by the scorer.
#
# One row per run is appended to bench/results/<YYYY-MM-DD>-<host>.tsv; a tool that fails (or
# cannot be set up, e.g. CellTypist's virtual environment) gets a row with status "failed", NA
# figures and the error in `note`, and the run goes on. Rows of one invocation share `run_id`.
#
# Usage (from the repository root, through scripts/with-env, as `make bench` does):
#   Rscript bench/run.R [--pairs P1,...,P6] [--seeds 0,1,2] [--tools cellpredx,seurat,singler,celltypist]
#                       [--threads N] [--out FILE]

source("bench/common.R")
source("bench/harness.R")
require_cli()

all_tools <- c("cellpredx", "seurat", "singler", "celltypist")
pairs_wanted <- check_pairs(split(option("pairs", "P1,P2,P3,P4,P5,P6")))
runner <- runner_options(all_tools, "0,1,2", "")
invisible(list2env(runner[c("tools", "seeds", "threads", "host", "out_file")], environment()))

run_id <- format(Sys.time(), "%Y-%m-%dT%H:%M:%S")
work <- tempfile("cellpredx-bench-run-")
dir.create(work)
on.exit(unlink(work, recursive = TRUE), add = TRUE)

write_machine_info(sub("\\.tsv$", ".machine.json", out_file), host)

# CellTypist's Python: set up once per run; NULL (with the error shown) when that fails.
celltypist <- if ("celltypist" %in% tools) setup_celltypist(work) else list(python = NULL)
celltypist_python <- celltypist$python
celltypist_setup_error <- celltypist$error

# The process that runs `tool` on a pair, writing predictions.tsv and run.json into `out`.
tool_command <- function(tool, pair_id, out, seed) {
  switch(tool,
    cellpredx = list(command = cli, args = cellpredx_transfer_args(pair_id, work, out, seed, threads = threads)),
    peer_command(tool, pair_id, work, out, celltypist_python, celltypist_setup_error))
}

columns <- c("pair", "tool", "variant", "seed", "accuracy", "macro_f1", "auroc", "oscr", "seconds", "peak_rss_mb",
             "fit_seconds", "cd8_recall", "per_type_recall", "version", "status", "run_id", "note")

# One tool on one pair: run, measure, score; any error becomes a "failed" row.
run_one <- function(tool, pair_id, seed) {
  out <- file.path(work, paste(pair_id, tool, seed, sep = "-"))
  row <- stats::setNames(as.list(rep(NA, length(columns))), columns)
  row[c("pair", "tool", "seed", "run_id", "status", "note")] <- list(pair_id, tool, seed, run_id, "ok", "")
  outcome <- tryCatch({
    command <- tool_command(tool, pair_id, out, seed)
    measured <- timed_process(command$command, command$args, paste0(out, ".log"), paste(tool, "on", pair_id))
    run <- jsonlite::fromJSON(file.path(out, "run.json"))
    score <- evaluate_predictions(file.path(out, "predictions.tsv"), pair_id, work)
    row$variant <- if (tool == "cellpredx") "full" else run$variant
    row$version <- if (tool == "cellpredx") row_commit else run$version
    row[c("accuracy", "macro_f1")] <- list(score$accuracy, score$macro_f1)
    if (!is.null(score$auroc)) row[c("auroc", "oscr")] <- list(score$auroc, score$oscr)
    row[c("seconds", "peak_rss_mb", "fit_seconds")] <- list(measured$seconds, measured$peak_rss_mb, run$fit_predict_seconds)
    if (pair_id == "P5") row$cd8_recall <- type_recall_count(score, "CD8 T cells")
    row$per_type_recall <- per_type_recall(score)
    NULL
  }, error = function(e) conditionMessage(e))
  if (!is.null(outcome)) {
    row$status <- "failed"
    row$note <- gsub("[\t\n]+", " | ", substr(outcome, 1, 500))
    message(outcome)
  }
  row
}
row_commit <- system("git rev-parse --short HEAD", intern = TRUE)

cat(sprintf("Run %s: %s on %s; CellPredX seeds %s; rows appended to %s\n", run_id, paste(tools, collapse = ","),
            paste(pairs_wanted, collapse = ","), paste(seeds, collapse = ","), out_file))
for (pair_id in pairs_wanted) {
  for (tool in tools) {
    # The peers are deterministic given their input: one run each (seed 0).
    for (seed in if (tool == "cellpredx") seeds else 0L) {
      row <- run_one(tool, pair_id, seed)
      append_tsv(as.data.frame(lapply(row, function(x) if (is.numeric(x)) round(x, 4) else x), check.names = FALSE),
                 out_file)
      cat(sprintf("%-3s %-10s %-18s seed %d: accuracy %s macro-F1 %s AUROC %s OSCR %s | %6.1f s %5.0f MB%s%s\n",
                  pair_id, tool, if (is.na(row$variant)) "" else row$variant, seed, fmt(row$accuracy, 3),
                  fmt(row$macro_f1, 3), fmt(row$auroc, 3), fmt(row$oscr, 3), if (is.na(row$seconds)) NaN else row$seconds,
                  if (is.na(row$peak_rss_mb)) NaN else row$peak_rss_mb,
                  if (is.na(row$cd8_recall)) "" else paste0(", CD8 T recall ", row$cd8_recall),
                  if (row$status == "failed") "  FAILED" else ""))
    }
  }
}
