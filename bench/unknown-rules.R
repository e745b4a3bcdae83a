# How candidate rules for the "Unknown" call would decide on the benchmark pairs: for each pair,
# a CLI transfer (seed 0, defaults, model saved), the model's scores for the reference's own cells,
# then, per rule, the share of shared-type query cells and of novel cells called Unknown. Query
# labels are read only here, to score the rules. Rows: bench/results/unknown-rules-<date>.tsv.
# Usage: scripts/with-env Rscript bench/unknown-rules.R [--pairs P4,P5,P6] [--work DIR]
# (an existing DIR/<pair>/predictions.tsv is reused).
source("bench/common.R")
source("bench/harness.R")
require_cli()
pairs <- check_pairs(split(option("pairs", "P4,P5,P6")))
work <- option("work", file.path(tempdir(), "unknown-rules"))
dir.create(work, showWarnings = FALSE, recursive = TRUE)

run_pair <- function(id) {
  pair <- bench_pairs[[id]]
  out <- file.path(work, id)
  model <- file.path(work, paste0(id, "-model"))
  ref_out <- file.path(work, paste0(id, "-refpred"))
  if (!file.exists(file.path(ref_out, "predictions.tsv"))) {
    unlink(c(out, model, ref_out), recursive = TRUE)
    run_logged(cli, c("--threads", "2", "transfer", pair_data_args(id, work), "--scenario", pair$scenario, "--out", out,
                      "--save-model", model, "--quiet", "--device", "cpu"), file.path(work, paste0(id, ".log")))
    args <- c("predict", "--model", model, "--query", pair$ref, "--out", ref_out)
    if (!is.null(pair$ref_cells)) args <- c(args, "--query-cells", write_lines_in(work, pair$ref_cells, paste0(id, "-ref.txt")))
    run_logged(cli, args, file.path(work, paste0(id, "-ref.log")))
  }
  read <- function(dir) utils::read.delim(file.path(dir, "predictions.tsv"), check.names = FALSE)
  list(query = read(out), ref = read(ref_out))
}

# Robust scale from the lower half of a distribution: novel cells sit in the upper tail, so the
# lower quartile describes the known cells even when the query holds many novel ones.
lower_half_cut <- function(v, k) stats::median(v) + k * (stats::median(v) - stats::quantile(v, 0.25)) / 0.6745
mad_cut <- function(v, k) stats::median(v) + k * stats::mad(v)

# Each rule: a function of the query's and the reference's predictions giving TRUE for Unknown.
rules <- list(
  `threshold 0.95 (paper)` = function(q, r) q$confidence < 0.95,
  `reference per type, 99% quantile` = function(q, r) q$novelty > tapply(r$novelty, r$best_type, stats::quantile, 0.99)[q$best_type],
  `reference per type, median + 5 MAD` = function(q, r) q$novelty > tapply(r$novelty, r$best_type, mad_cut, 5)[q$best_type],
  `query per type, median + 3 MAD` = function(q, r) q$novelty > tapply(q$novelty, q$best_type, mad_cut, 3)[q$best_type],
  `query, median + 3 MAD` = function(q, r) q$novelty > mad_cut(q$novelty, 3),
  `query, lower-half scale, k = 3` = function(q, r) q$novelty > lower_half_cut(q$novelty, 3),
  `query, lower-half scale, k = 4` = function(q, r) q$novelty > lower_half_cut(q$novelty, 4)
)

rows <- do.call(rbind, lapply(pairs, function(id) {
  pair <- bench_pairs[[id]]
  p <- run_pair(id)
  truth <- read_metadata(pair$query)
  truth <- truth$cell_type[match(p$query$cell, truth[[1]])]
  known <- truth %in% if (is.null(pair$map)) sub("^p:", "", grep("^p:", names(p$query), value = TRUE)) else pair$map$to
  cut_at_10 <- stats::quantile(p$query$novelty[known], 0.9)
  best <- if (any(!known)) mean(p$query$novelty[!known] > cut_at_10) else NA
  do.call(rbind, lapply(names(rules), function(name) {
    unknown <- rules[[name]](p$query, p$ref)
    data.frame(pair = id, rule = name, known_cells = sum(known), novel_cells = sum(!known),
               unknown_known = round(mean(unknown[known], na.rm = TRUE), 3),
               unknown_novel = if (any(!known)) round(mean(unknown[!known], na.rm = TRUE), 3) else NA,
               novel_at_10pct_known = round(best, 3), check.names = FALSE)
  }))
}))
print(rows, row.names = FALSE)
append_tsv(cbind(date = format(Sys.Date()), rows), file.path(root, "bench", "results", paste0("unknown-rules-", format(Sys.Date()), ".tsv")))
