# The CellPredX command-line tool on the benchmark pairs of ../shared/BENCHMARKS.md.
#
# For each pair, variant and seed: one `cellpredx transfer` (fresh process, so its peak memory is
# its own) and one `cellpredx evaluate`; one row per run is printed and appended to
# bench/results/pairs.tsv. Query labels are read only by `evaluate`.
#
# Usage (from the repository root, through scripts/with-env, as `make bench` does):
#   Rscript bench/pairs.R [--pairs P1,P2,...] [--seeds 0,1,2] [--variants full,no_fa,no_cl,no_sc,no_pr,sc_raw,single]
#                         [--device cpu|cuda|auto] [--threads N] [--note TEXT] [--out FILE] [-- extra transfer args]
# The loss ablation variants run on P1-P4 only (each removes one loss: no_pr removes projection
# regularisation and its L1 penalty; sc_raw keeps every loss but weighs the center loss with the
# raw attention weights instead of weights normalised to mean 1). `single` trains one network
# where the default trains an ensemble of three (RNA -> ATAC, small panels): the speed of one
# training, and what the ensemble adds.

source("bench/common.R")
source("bench/harness.R")
require_cli()

pairs_wanted <- split(option("pairs", "P1,P2,P3,P4,P5,P6"))
seeds <- as.integer(split(option("seeds", "0,1,2")))
variants <- split(option("variants", "full"))
device <- option("device", "cpu")
threads <- option("threads", NA)
note <- option("note", "")
out_file <- option("out", file.path(root, "bench", "results", "pairs.tsv"))

variant_args <- list(
  full = character(),
  no_fa = c("--alignment-weight", "0"),
  no_cl = c("--contrastive-weight", "0"),
  no_sc = c("--center-weight", "0"),
  no_pr = c("--projection-weight", "0", "--l1-weight", "0"),
  sc_raw = c("--center-weighting", "raw"),
  single = c("--networks", "1")
)
unknown <- setdiff(variants, names(variant_args))
if (length(unknown)) stop("unknown variant(s): ", paste(unknown, collapse = ", "))

check_pairs(pairs_wanted)

work <- tempfile("cellpredx-bench-")
dir.create(work)
on.exit(unlink(work, recursive = TRUE), add = TRUE)

columns <- c("date", "pair", "tool", "variant", "seed", "accuracy", "macro_f1", "auroc", "oscr", "seconds",
             "fit_seconds", "peak_rss_mb", "steps", "device", "threads", "cd8_recall", "note")
if (!file.exists(out_file)) {
  dir.create(dirname(out_file), showWarnings = FALSE, recursive = TRUE)
  writeLines(paste(columns, collapse = "\t"), out_file)
}

cat(sprintf("CellPredX CLI on %s; seeds %s; variants %s; device %s; results appended to %s\n",
            paste(pairs_wanted, collapse = ","), paste(seeds, collapse = ","), paste(variants, collapse = ","),
            device, out_file))
summary_rows <- list()
for (pair_id in pairs_wanted) {
  pair_variants <- if (pair_id %in% c("P1", "P2", "P3", "P4")) variants else intersect(variants, c("full", "single"))
  for (variant in pair_variants) {
    for (seed in seeds) {
      out <- file.path(work, paste(pair_id, variant, seed, sep = "-"))
      log <- paste0(out, ".log")
      started <- Sys.time()
      run_logged(cli, cellpredx_transfer_args(pair_id, work, out, seed, device, threads, c(variant_args[[variant]], bench_extra)),
                 log, "cellpredx transfer")
      seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
      run <- jsonlite::fromJSON(file.path(out, "run.json"))
      score <- evaluate_predictions(file.path(out, "predictions.tsv"), pair_id, work)
      cd8 <- if (pair_id == "P5") type_recall_count(score, "CD8 T cells") else NA
      row <- c(format(Sys.time(), "%Y-%m-%d %H:%M"), pair_id, "cellpredx-cli", variant, seed,
               fmt(score$accuracy), fmt(score$macro_f1), fmt(score$auroc), fmt(score$oscr), fmt(seconds, 1),
               fmt(run$fit_predict_seconds, 1), fmt(run$peak_rss_mb, 0), run$steps, run$device, run$threads,
               if (is.na(cd8)) "NA" else cd8, gsub("[\t\n]", " ", note))
      cat(paste(row, collapse = "\t"), "\n", file = out_file, append = TRUE, sep = "")
      summary_rows[[length(summary_rows) + 1]] <- data.frame(
        pair = pair_id, variant = variant, accuracy = score$accuracy, macro_f1 = score$macro_f1,
        auroc = if (is.null(score$auroc)) NA else score$auroc, seconds = seconds,
        peak_rss_mb = if (is.null(run$peak_rss_mb)) NA else run$peak_rss_mb)
      cat(sprintf("%-3s %-6s seed %d: accuracy %s macro-F1 %s AUROC %s OSCR %s | %5.1f s (fit %s s) %s MB, %d steps%s\n",
                  pair_id, variant, seed, fmt(score$accuracy, 3), fmt(score$macro_f1, 3), fmt(score$auroc, 3),
                  fmt(score$oscr, 3), seconds, fmt(run$fit_predict_seconds, 1), fmt(run$peak_rss_mb, 0), run$steps,
                  if (is.na(cd8)) "" else paste0(", CD8 T recall ", cd8)))
    }
  }
}

# Mean and spread over the seeds of this invocation.
runs <- do.call(rbind, summary_rows)
cat("\nmean (sd) over seeds", paste(seeds, collapse = ","), "\n")
for (key in unique(paste(runs$pair, runs$variant))) {
  r <- runs[paste(runs$pair, runs$variant) == key, ]
  ms <- function(x) if (all(is.na(x))) "NA" else sprintf("%.3f (%.3f)", mean(x), if (length(x) > 1) stats::sd(x) else 0)
  cat(sprintf("%-10s accuracy %s  macro-F1 %s  AUROC %s  %5.1f s  %4.0f MB max\n", key, ms(r$accuracy),
              ms(r$macro_f1), ms(r$auroc), mean(r$seconds), max(r$peak_rss_mb)))
}

# The speed target of one training on P1 (up to 3,000 steps, plus prediction): at most 60 s and
# under 1 GB of peak memory for the whole `cellpredx transfer` process, on every seed.
single_p1 <- runs[runs$pair == "P1" & runs$variant == "single", ]
if (nrow(single_p1)) {
  met <- function(ok) if (ok) "met" else "NOT met"
  cat(sprintf("\nP1, one network, training + prediction (whole process): %s s (slowest %.1f s; target <= 60 s: %s); peak %.0f MB (target < 1024 MB: %s)\n",
              paste(sprintf("%.1f", single_p1$seconds), collapse = ", "), max(single_p1$seconds), met(max(single_p1$seconds) <= 60),
              max(single_p1$peak_rss_mb), met(max(single_p1$peak_rss_mb) < 1024)))
}
