# SingleR on one benchmark pair, as its own process so that bench/run.R can measure it. Writes
# <out>/predictions.tsv (the format `cellpredx evaluate` reads) and <out>/run.json. The query's
# labels are never read.
#
# Input: log-normalised counts (as scuttle::logNormCounts; log or scaled values, P6's and some wider
# pairs', used as they are), the features both sides share, marker genes by pairwise Wilcoxon tests
# (de.method = "wilcox", which needs scran).
# The call is SingleR's label after fine-tuning (not the pruned label: every cell gets a type,
# as every tool is scored). Confidence = the called type's score minus the median score of the
# cell, the "delta from the median" SingleR's own pruning (pruneScores) thresholds; the open-set
# score (log_doubt column) is its negative. The p:<type> columns hold the per-type scores.
#
# Usage: Rscript bench/peers/singler.R --pair P5 --out DIR

source("bench/common.R")
source("bench/harness.R")
if (!requireNamespace("scran", quietly = TRUE)) stop("SingleR's wilcox markers need scran: apt-get install r-bioc-scran")

pair_id <- check_pairs(option("pair", NA))
out_dir <- option("out", NA)
if (is.na(out_dir)) stop("--out DIR is required")
data <- read_pair(pair_id)
ref_labels <- data$ref$meta$cell_type
query_counts <- data$query$counts  # counts only: the query's metadata (labels) stays unused

started <- Sys.time()
shared <- intersect(rownames(data$ref$counts), rownames(query_counts))
# log2(counts / size factor + 1), as scuttle::logNormCounts, with library-size factors; cells
# with no counts in the shared features (there are some in the sparse SNARE-seq pairs) keep a
# factor of 1 instead of stopping logNormCounts. A side that holds log or scaled values
# (pair_values: P6, some wider-benchmark pairs) is taken as it is.
log_values <- function(counts, values) {
  if (values %in% c("log", "scaled")) return(counts)
  library_size <- Matrix::colSums(counts)
  size_factors <- library_size / mean(library_size)
  size_factors[size_factors == 0] <- 1
  scuttle::normalizeCounts(counts, size.factors = size_factors)
}
ref <- log_values(data$ref$counts[shared, ], pair_values(pair_id, "ref"))
query <- log_values(query_counts[shared, ], pair_values(pair_id, "query"))
result <- SingleR::SingleR(test = query, ref = ref, labels = ref_labels, de.method = "wilcox")
fit_predict_seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))

scores <- result$scores
called <- scores[cbind(seq_len(nrow(scores)), match(result$labels, colnames(scores)))]
delta <- called - apply(scores, 1, stats::median)
write_predictions(file.path(out_dir, "predictions.tsv"), colnames(query_counts), result$labels, delta, -delta, scores)
jsonlite::write_json(list(tool = "singler", variant = "wilcox", version = as.character(packageVersion("SingleR")),
                          fit_predict_seconds = fit_predict_seconds),
                     file.path(out_dir, "run.json"), auto_unbox = TRUE)
cat(sprintf("singler wilcox on %s: %.1f s\n", pair_id, fit_predict_seconds))
