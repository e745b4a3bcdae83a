# The wider benchmark (bench/pairs-wide.R, bench/PAIRS.md): on each pair, CellPredX's CLI for
# every candidate setting x every seed, then the centroid baseline (bench/centroid.R) and the
# peers of bench/peers/ (SingleR, Seurat, CellTypist where its environment exists), each as its
# own process under /usr/bin/time -v and each scored by `cellpredx evaluate`. Query labels are
# read only by the scorer. bench/robust-report.R turns the rows into bench/ROBUST.md, with the
# in-sample and leave-one-pair-out (LOPO) choice among the candidates.
#
# One row per run is appended to bench/results/robust-<YYYY-MM-DD>-<host>.tsv. `status` is
#   ok        the run finished;
#   recovered it finished, but the run says training went non-finite and was recovered from (a
#             recovery field in run.json, a non-finite loss in history.tsv or "recover" in its log);
#   diverged  CellPredX stopped with an error that says "diverged";
#   failed    any other error (the message, cut, goes to `note`);
#   not_run   the tool cannot run here or on this pair (CellTypist without its environment).
# A diverged or failed run does not stop the others.
#
# Usage (from the repository root, through scripts/with-env; `make bench-robust` runs it all):
#   Rscript bench/robust.R [--pairs all|small|ID,...] [--seeds 0,1,2,3,4]
#       [--tools cellpredx,centroid,singler,seurat,celltypist] [--threads N] [--out FILE]
#       [--candidates "defaults=;lr01=--learning-rate 0.01"] [--setup-celltypist]
# --candidates: `;`-separated NAME=FLAGS, FLAGS being extra `cellpredx transfer` flags (split on
# spaces; an empty FLAGS is the defaults). --pairs small: P4-P6 and every W pair (one CellPredX run
# in well under a minute), i.e. all but P1-P3. --setup-celltypist creates CellTypist's virtual
# environment from PyPI when missing (otherwise CellTypist rows are `not_run` without it).

source("bench/common.R")
source("bench/harness.R")
require_cli()

all_tools <- c("cellpredx", "centroid", "singler", "seurat", "celltypist")
pairs_option <- option("pairs", "all")
pairs_wanted <- switch(pairs_option,
  all = wide_pair_ids,
  small = wide_pair_ids[vapply(wide_pair_ids, function(id) isTRUE(bench_pairs[[id]]$small) || id %in% c("P4", "P5", "P6"),
                               logical(1))],
  check_pairs(split(pairs_option)))
runner <- runner_options(all_tools, "0,1,2,3,4", "robust-")
invisible(list2env(runner[c("tools", "seeds", "threads", "host", "out_file")], environment()))

# "NAME=FLAGS;NAME=FLAGS" -> named list of flag vectors.
parse_candidates <- function(text) {
  entries <- strsplit(text, ";", fixed = TRUE)[[1]]
  entries <- trimws(entries[nzchar(trimws(entries))])
  if (!length(entries) || !all(grepl("=", entries, fixed = TRUE))) stop("--candidates takes NAME=FLAGS;NAME=FLAGS, not \"", text, "\"")
  names <- trimws(sub("=.*", "", entries))
  if (anyDuplicated(names) || any(!grepl("^[A-Za-z0-9_.-]+$", names))) stop("candidate names must be unique words: ", paste(names, collapse = ", "))
  flags <- lapply(trimws(sub("^[^=]*=", "", entries)), function(f) if (nzchar(f)) strsplit(f, "\\s+")[[1]] else character())
  stats::setNames(flags, names)
}
candidates <- parse_candidates(option("candidates", "defaults="))

run_id <- format(Sys.time(), "%Y-%m-%dT%H:%M:%S")
commit <- system("git rev-parse --short HEAD", intern = TRUE)
work <- tempfile("cellpredx-bench-robust-")
dir.create(work)
on.exit(unlink(work, recursive = TRUE), add = TRUE)
write_machine_info(sub("\\.tsv$", ".machine.json", out_file), host)
celltypist <- if ("celltypist" %in% tools) setup_celltypist(work, install = "--setup-celltypist" %in% bench_args) else list()

columns <- c("pair", "in_sample", "tool", "candidate", "flags", "seed", "status", "accuracy", "macro_f1", "auroc", "oscr",
             "seconds", "peak_rss_mb", "fit_seconds", "per_type_recall", "variant", "version", "run_id", "note")

# TRUE when a finished CellPredX run shows it recovered from a non-finite training: a field of
# run.json whose name says recovery/restart/retry with a non-zero value (the CLI of this commit
# has none; a recovering trainer is expected to record one), a non-finite total loss in
# history.tsv, or a line of its log that says so.
recovered_run <- function(out, log) {
  fields <- unlist(jsonlite::fromJSON(file.path(out, "run.json"), simplifyVector = FALSE))
  hits <- fields[grepl("recover|restart|retr(y|ies)|fallback", names(fields), ignore.case = TRUE)]
  by_field <- any(vapply(hits, function(v) isTRUE(as.logical(v)) || isTRUE(suppressWarnings(as.numeric(v)) > 0), logical(1)))
  history_file <- file.path(out, "history.tsv")
  by_history <- file.exists(history_file) && {
    total <- suppressWarnings(as.numeric(utils::read.delim(history_file, stringsAsFactors = FALSE)$total))
    any(!is.finite(total))
  }
  by_log <- any(grepl("recover", readLines(log, warn = FALSE), ignore.case = TRUE))
  by_field || by_history || by_log
}

# One run: measure, score, classify; never stops the loop.
run_one <- function(tool, pair_id, seed, candidate = NA_character_) {
  flags <- if (is.na(candidate)) character() else candidates[[candidate]]
  out <- file.path(work, paste(pair_id, tool, if (is.na(candidate)) "peer" else candidate, seed, sep = "-"))
  log <- paste0(out, ".log")
  row <- stats::setNames(as.list(rep(NA, length(columns))), columns)
  row[c("pair", "in_sample", "tool", "candidate", "flags", "seed", "run_id", "status", "note")] <-
    list(pair_id, pair_id %in% in_sample_pairs, tool, candidate, paste(flags, collapse = " "), seed, run_id, "ok", "")
  if (tool == "celltypist" && is.null(celltypist$python)) {
    row$status <- "not_run"
    row$note <- celltypist$error
    return(row)
  }
  error <- tryCatch({
    command <- if (tool == "cellpredx") {
      list(command = cli, args = cellpredx_transfer_args(pair_id, work, out, seed, threads = threads, extra = flags))
    } else {
      peer_command(tool, pair_id, work, out, celltypist$python, celltypist$error)
    }
    measured <- timed_process(command$command, command$args, log, paste(tool, "on", pair_id))
    run <- jsonlite::fromJSON(file.path(out, "run.json"))
    score <- evaluate_predictions(file.path(out, "predictions.tsv"), pair_id, work)
    row[c("accuracy", "macro_f1")] <- list(score$accuracy, score$macro_f1)
    if (!is.null(score$auroc)) row[c("auroc", "oscr")] <- list(score$auroc, score$oscr)
    row[c("seconds", "peak_rss_mb", "fit_seconds")] <- list(measured$seconds, measured$peak_rss_mb, run$fit_predict_seconds)
    row$per_type_recall <- per_type_recall(score)
    row$variant <- if (tool == "cellpredx") paste0(length(run$networks), " network(s), ", run$steps, " steps") else run$variant
    row$version <- if (tool == "cellpredx") commit else run$version
    if (tool == "cellpredx" && recovered_run(out, log)) row$status <- "recovered"
    NULL
  }, error = function(e) conditionMessage(e))
  if (!is.null(error)) {
    # CellTypist refusing a pair's values is a limit of its script, not a failure of the tool.
    row$status <- if (tool == "cellpredx" && grepl("diverg", error, ignore.case = TRUE)) "diverged"
                  else if (tool == "celltypist" && grepl("takes counts or log values", error)) "not_run" else "failed"
    row$note <- gsub("[\t\n]+", " | ", substr(error, 1, 400))
    message(sprintf("%s on %s: %s", tool, pair_id, row$status))
  }
  row
}

cat(sprintf("Run %s: %s on %d pairs (%s); CellPredX candidates %s x seeds %s; rows appended to %s\n", run_id,
            paste(tools, collapse = ","), length(pairs_wanted), paste(pairs_wanted, collapse = ","),
            paste(names(candidates), collapse = ","), paste(seeds, collapse = ","), out_file))
started <- Sys.time()
for (pair_id in pairs_wanted) {
  for (tool in tools) {
    # The peers and the baseline are deterministic given their input: one run each (seed 0).
    runs <- if (tool == "cellpredx") expand.grid(seed = seeds, candidate = names(candidates), stringsAsFactors = FALSE)
            else data.frame(seed = 0L, candidate = NA_character_)
    for (i in seq_len(nrow(runs))) {
      row <- run_one(tool, pair_id, runs$seed[i], runs$candidate[i])
      append_tsv(as.data.frame(lapply(row, function(x) if (is.numeric(x)) round(x, 4) else x), check.names = FALSE), out_file)
      cat(sprintf("%-3s %-10s %-10s seed %d: %-9s accuracy %s macro-F1 %s AUROC %s | %6.1f s %5.0f MB\n", pair_id, tool,
                  if (is.na(row$candidate)) "" else row$candidate, row$seed, row$status, fmt(row$accuracy, 3),
                  fmt(row$macro_f1, 3), fmt(row$auroc, 3), if (is.na(row$seconds)) NaN else row$seconds,
                  if (is.na(row$peak_rss_mb)) NaN else row$peak_rss_mb))
    }
  }
}
cat(sprintf("done in %.1f min\n", as.numeric(difftime(Sys.time(), started, units = "mins"))))
