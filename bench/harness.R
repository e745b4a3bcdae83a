# What the scripts that run tools on the pairs share: the CellPredX CLI, the arguments that give
# it (or any tool taking directories) a pair, running a process under /usr/bin/time -v, the
# predictions.tsv format and the one scorer, `cellpredx evaluate`, used for every tool.
# Sourced after bench/common.R: source("bench/common.R"); source("bench/harness.R").

target_dir <- Sys.getenv("CELLPREDX_TARGET_DIR", file.path(root, "target"))
cli <- file.path(target_dir, "release", "cellpredx")
require_cli <- function() {
  if (!file.exists(cli)) stop(cli, " is missing: build it with `scripts/with-env cargo build --release --locked -p cellpredx-cli` (make bench does)")
}

# Runs `command args` with stdout and stderr into `log`; stops with the log's tail on failure.
run_logged <- function(command, args, log, what = basename(command)) {
  status <- system2(command, args, stdout = log, stderr = log)
  if (status != 0) {
    tail_lines <- utils::tail(readLines(log, warn = FALSE), 30)
    stop(what, " failed (status ", status, "):\n", paste(tail_lines, collapse = "\n"), call. = FALSE)
  }
  invisible(log)
}

# Runs a whole process under /usr/bin/time -v and returns its wall seconds and peak resident
# memory (MB) as the kernel saw them, so every tool is measured the same way: start-up, reading
# the data, fitting and predicting. Failure: an error carrying the log's tail.
timed_process <- function(command, args, log, what = basename(command)) {
  if (!file.exists("/usr/bin/time")) stop("/usr/bin/time is missing: apt-get install time (scripts/setup does)")
  time_file <- paste0(log, ".time")
  run_logged("/usr/bin/time", c("-v", "-o", shQuote(time_file), shQuote(command), args), log, what)
  lines <- readLines(time_file)
  field <- function(name) sub(".*: ", "", grep(name, lines, value = TRUE, fixed = TRUE)[1])
  wall <- as.numeric(rev(strsplit(field("Elapsed (wall clock) time"), ":", fixed = TRUE)[[1]]))
  list(seconds = sum(wall * c(1, 60, 3600)[seq_along(wall)]),
       peak_rss_mb = as.numeric(field("Maximum resident set size (kbytes)")) / 1024)
}

# Writes `x` one per line into `dir` and returns the file's path.
write_lines_in <- function(dir, x, name) {
  path <- file.path(dir, name)
  writeLines(x, path)
  path
}

# The reference / query arguments every directory-reading tool takes for a pair (the CLI's
# `transfer` and bench/peers/celltypist.py): directories plus the files listing the cells used.
pair_data_args <- function(pair_id, work) {
  pair <- bench_pairs[[pair_id]]
  args <- c("--ref", pair$ref, "--query", pair$query)
  if (!is.null(pair$ref_cells)) args <- c(args, "--ref-cells", write_lines_in(work, pair$ref_cells, paste0(pair_id, "-ref.txt")))
  if (!is.null(pair$query_cells)) args <- c(args, "--query-cells", write_lines_in(work, pair$query_cells, paste0(pair_id, "-query.txt")))
  args
}

# predictions.tsv as `cellpredx transfer` writes it and `cellpredx evaluate` reads it: cell,
# label, best_type, confidence, log_doubt and novelty (for a peer both hold its open-set score:
# larger = more likely a type the reference lacks; only its order matters to AUROC and OSCR) and one `p:<type>` column per reference type (evaluate
# takes the reference's types from these names). `scores` is cells x types.
write_predictions <- function(path, cells, best_type, confidence, doubt, scores) {
  stopifnot(length(cells) == nrow(scores), length(best_type) == length(cells))
  table <- data.frame(cell = cells, label = best_type, best_type = best_type, confidence = confidence,
                      log_doubt = doubt, novelty = doubt, check.names = FALSE)
  scores <- as.data.frame(as.matrix(scores), check.names = FALSE)
  names(scores) <- paste0("p:", colnames(scores))
  dir.create(dirname(path), showWarnings = FALSE, recursive = TRUE)
  utils::write.table(cbind(table, scores), path, sep = "\t", quote = FALSE, row.names = FALSE)
}

# Scores a predictions.tsv against the query's labels with `cellpredx evaluate` (collapsing
# types with the pair's map on P5; against the pair's collapsed `truth` file where it has one).
# Returns its JSON as a list.
evaluate_predictions <- function(pred, pair_id, work) {
  pair <- bench_pairs[[pair_id]]
  truth <- if (is.null(pair$truth)) pair$query else pair$truth
  args <- c("evaluate", "--pred", pred, "--truth", truth, "--json")
  if (!is.null(pair$map)) {
    map_file <- file.path(work, paste0(pair_id, "-map.tsv"))
    utils::write.table(pair$map, map_file, sep = "\t", quote = FALSE, row.names = FALSE)
    args <- c(args, "--map", map_file)
  }
  json <- paste0(pred, ".eval.json")
  run_logged(cli, args, json, "cellpredx evaluate")
  jsonlite::fromJSON(json)
}

# "correct/support" of one type in an evaluation (P5's CD8 T cells), or NA.
type_recall_count <- function(score, type) {
  hit <- score$per_type[score$per_type$type == type, ]
  if (nrow(hit)) sprintf("%d/%d", hit$correct, hit$support) else NA_character_
}

# Per-type recall of an evaluation as "type=recall;type=recall" (types with support only).
per_type_recall <- function(score) {
  types <- score$per_type[score$per_type$support > 0, ]
  paste(sprintf("%s=%.3f", types$type, types$recall), collapse = ";")
}

fmt <- function(x, digits = 4) if (is.null(x) || length(x) == 0 || is.na(x)) "NA" else formatC(x, digits = digits, format = "f")

# The `cellpredx transfer` arguments of one run on a pair (its preset for the pair's scenario).
cellpredx_transfer_args <- function(pair_id, work, out, seed, device = "cpu", threads = NA, extra = character()) {
  args <- c("transfer", pair_data_args(pair_id, work), "--scenario", bench_pairs[[pair_id]]$scenario,
            "--device", device, "--quiet", "--out", out, "--seed", seed, extra)
  if (!is.na(threads)) args <- c("--threads", threads, args)
  args
}
