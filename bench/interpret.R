# Determinant genes (Integrated Gradients) on benchmark pairs: the time to explain every query
# cell, batched and one cell at a time (same code, one cell per pass), the completeness of the
# attributions, and the key gene hit rate (KGHR) against the marker lists of bench/markers/,
# which were written down before any output was seen.
#
# Usage (from the repository root, through scripts/with-env, as `make bench` does):
#   Rscript bench/interpret.R [--pairs P1,P5] [--seed 0] [--out-dir bench/results]
# Appends to <out-dir>/interpret.tsv (timings) and <out-dir>/kghr.tsv (hit rates per type).

source("bench/common.R")
suppressPackageStartupMessages(library(CellPredX))

pairs_wanted <- check_pairs(split(option("pairs", "P1,P5")))
seed <- as.integer(option("seed", "0"))
out_dir <- option("out-dir", file.path(root, "bench", "results"))
markers_of <- list(P1 = "bench/markers/mouse_cortex.tsv", P5 = "bench/markers/pbmc.tsv")
stamp <- format(Sys.time(), "%Y-%m-%d %H:%M")

for (id in pairs_wanted) {
  pair <- bench_pairs[[id]]
  data <- read_pair(id)
  query <- data$query$counts
  cat(sprintf("%s: training on %d reference cells, %d query cells (seed %d) ...\n", id, ncol(data$ref$counts), ncol(query), seed))
  model <- TrainCellPredX(data$ref$counts, query, ref.labels = data$ref$meta$cell_type, scenario = pair$scenario,
                          seed = seed, verbose = FALSE)
  # Four ways to the same attributions: the path through the embedding or through the input
  # (the textbook way), many cells per pass or one cell per pass (as Captum is run per cell).
  runs <- list()
  for (space in c("embedding", "input")) {
    for (per_pass in list(NULL, 1L)) {
      mode <- paste(space, if (is.null(per_pass)) "batched" else "one_cell", sep = "_")
      seconds <- system.time(runs[[mode]] <- DeterminantGenes(model, query, cells.per.pass = per_pass, path.space = space,
                                                              verbose = FALSE))[["elapsed"]]
      runs[[mode]] <- list(result = runs[[mode]], seconds = seconds)
    }
  }
  determinants <- runs$embedding_batched$result
  completeness <- attr(determinants, "completeness")
  gap <- abs(completeness$attribution_sum - completeness$prediction_change)
  moved <- abs(completeness$prediction_change) > 0.01
  relative_gap <- max(gap[moved] / abs(completeness$prediction_change[moved]))
  seconds <- vapply(runs, function(r) r$seconds, numeric(1))
  same <- vapply(runs, function(r) isTRUE(all.equal(as.data.frame(determinants), as.data.frame(r$result), tolerance = 1e-3)), logical(1))
  timing <- data.frame(date = stamp, pair = id, seed = seed, cells = ncol(query), features = length(model$description$features),
                       steps = 50, mode = names(runs), seconds = round(seconds, 2),
                       speedup_of_embedding_batched = round(seconds / seconds[["embedding_batched"]], 1),
                       same_rankings = same, max_relative_completeness_gap = signif(relative_gap, 3),
                       peak_rss_mb = round(peak_rss_mb()))
  append_tsv(timing, file.path(out_dir, "interpret.tsv"))
  cat(sprintf("%s: Integrated Gradients over %d cells x %d features x 50 steps; attributions add up to the change in probability within %.2g%%\n",
              id, ncol(query), timing$features[1], 100 * relative_gap))
  for (i in seq_len(nrow(timing))) {
    cat(sprintf("  %-18s %7.1f s  (embedding_batched is %.1fx faster)  same rankings: %s\n", timing$mode[i], timing$seconds[i],
                timing$speedup_of_embedding_batched[i], timing$same_rankings[i]))
  }

  markers <- utils::read.delim(markers_of[[id]], stringsAsFactors = FALSE)
  for (ranking in c("frequency", "mean_attribution")) {
    hits <- KeyGeneHitRate(determinants, markers, ranking = ranking)
    append_tsv(cbind(data.frame(date = stamp, pair = id, seed = seed, ranking = ranking), hits[setdiff(names(hits), "found_genes")]),
               file.path(out_dir, "kghr.tsv"))
    cat(sprintf("%s KGHR (%s ranking, top 50): mean %.3f over %d types\n", id, ranking, mean(hits$hit_rate, na.rm = TRUE), nrow(hits)))
    for (i in seq_len(nrow(hits))) {
      cat(sprintf("  %-14s %d/%d markers found (%d not among the features): %s\n", hits$cell_type[i], hits$found[i],
                  hits$in_features[i], hits$markers[i] - hits$in_features[i], hits$found_genes[i]))
    }
  }
}
