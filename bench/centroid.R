# The centroid baseline of the wider benchmark: the simplest transfer a user could write, so that
# every tool's figure on a pair can be read against what no learning at all achieves there.
# Run as its own process (like bench/peers/), so bench/robust.R times and scores it the same way:
# writes <out>/predictions.tsv (harness format) and <out>/run.json. The query's labels are never read.
#
# Usage: Rscript bench/centroid.R --pair W1 --out DIR [--method spearman|pearson] [--top-genes 2000]

# Assigns each query cell the reference type whose mean profile it correlates best with.
#   ref, query: features x cells matrices (sparse or dense); ref_labels: one type per reference cell;
#   ref_values, query_values: "counts" (and "proteins", also counts) are log-normalised, log1p of
#     counts per 10,000, so that depth differences do not decide; "log" and "scaled" values are
#     taken as they are (they are normalised already, and scaled values cannot be made counts again);
#   method: "spearman" (default: ranks are robust to the scale shifts between protocols) or "pearson";
#   top_genes: keep the shared features of highest variance in the normalised reference (the
#     reference alone chooses), which also bounds the dense matrices on peak sets (P3: 25,734);
#   block: query cells correlated at a time, to bound memory.
# Returns list(type, scores = cells x types correlation matrix).
centroid_baseline <- function(ref, ref_labels, query, ref_values = "counts", query_values = "counts",
                              method = c("spearman", "pearson"), top_genes = 2000, block = 1000) {
  method <- match.arg(method)
  normalise <- function(m, values) {
    if (!values %in% c("counts", "proteins")) return(m)
    depth <- Matrix::colSums(m)
    depth[depth == 0] <- 1  # an empty cell stays all zero rather than NaN
    log1p(m %*% Matrix::Diagonal(x = 1e4 / depth))
  }
  shared <- intersect(rownames(ref), rownames(query))
  if (length(shared) < 2) stop("the reference and query share ", length(shared), " features")
  ref <- normalise(ref[shared, , drop = FALSE], ref_values)
  if (length(shared) > top_genes) {
    mean <- Matrix::rowMeans(ref)
    variance <- Matrix::rowMeans(ref^2) - mean^2
    shared <- shared[sort(order(variance, decreasing = TRUE)[seq_len(top_genes)])]
    ref <- ref[shared, , drop = FALSE]
  }
  types <- sort(unique(ref_labels))
  # Each type's mean profile: features x types.
  membership <- Matrix::sparseMatrix(i = seq_along(ref_labels), j = match(ref_labels, types), x = 1,
                                     dims = c(length(ref_labels), length(types)))
  centroids <- as.matrix(ref %*% membership %*% Matrix::Diagonal(x = 1 / Matrix::colSums(membership)))
  colnames(centroids) <- types
  query <- normalise(query[shared, , drop = FALSE], query_values)
  scores <- do.call(rbind, lapply(base::split(seq_len(ncol(query)), ceiling(seq_len(ncol(query)) / block)), function(cols) {
    # A cell whose shared features are all equal (e.g. no reads in them) has no correlation: 0.
    s <- suppressWarnings(stats::cor(as.matrix(query[, cols, drop = FALSE]), centroids, method = method))
    s[is.na(s)] <- 0
    s
  }))
  rownames(scores) <- colnames(query)
  list(type = types[max.col(scores, ties.method = "first")], scores = scores)
}

if (sys.nframe() == 0) {
  source("bench/common.R")
  source("bench/harness.R")
  pair_id <- check_pairs(option("pair", NA))
  out_dir <- option("out", NA)
  if (is.na(out_dir)) stop("--out DIR is required")
  method <- option("method", "spearman")
  top_genes <- as.integer(option("top-genes", 2000))
  data <- read_pair(pair_id)
  started <- Sys.time()
  # Counts only from the query: its metadata (labels) stays unused.
  result <- centroid_baseline(data$ref$counts, data$ref$meta$cell_type, data$query$counts,
                              pair_values(pair_id, "ref"), pair_values(pair_id, "query"), method, top_genes)
  fit_predict_seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
  best <- apply(result$scores, 1, max)
  # Confidence: the best correlation; open-set score: its negative (a cell like no type is novel).
  write_predictions(file.path(out_dir, "predictions.tsv"), colnames(data$query$counts), result$type, best, -best,
                    result$scores)
  jsonlite::write_json(list(tool = "centroid", variant = sprintf("%s, top %d", method, top_genes),
                            version = system("git rev-parse --short HEAD", intern = TRUE),
                            fit_predict_seconds = fit_predict_seconds),
                       file.path(out_dir, "run.json"), auto_unbox = TRUE)
  cat(sprintf("centroid %s on %s: %.1f s\n", method, pair_id, fit_predict_seconds))
}
