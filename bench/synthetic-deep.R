# A small cross-protocol pair with deep libraries, the shape of issue 18's failing references:
# a reference of 3 types x 70 cells and a query of 3 types x 100 cells, 15,000 genes, raw read
# counts with library sizes 1e5-5e6 per cell (most genes detected in every cell). The query's
# "protocol" multiplies each gene by its own capture efficiency. Written as MatrixMarket
# directories (features x cells) that `cellpredx transfer` reads.
#
# Usage: Rscript bench/synthetic-deep.R OUT_DIR [SEED] [GENES]
args <- commandArgs(trailingOnly = TRUE)
out <- args[[1]]
seed <- if (length(args) >= 2) as.integer(args[[2]]) else 1L
genes <- if (length(args) >= 3) as.integer(args[[3]]) else 15000L
set.seed(seed)
types <- c("alpha", "beta", "gamma")
base <- rlnorm(genes, 0, 2)                               # gene abundances spanning orders of magnitude
markers <- lapply(seq_along(types), function(k) sample.int(genes, 200))
profile <- sapply(seq_along(types), function(k) { p <- base; p[markers[[k]]] <- p[markers[[k]]] * 8; p / sum(p) })
efficiency <- rlnorm(genes, 0, 0.7)                       # the query protocol's per-gene capture

write_side <- function(dir, cells_per_type, gene_scale, prefix) {
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  label <- rep(types, each = cells_per_type)
  n <- length(label)
  library_size <- exp(runif(n, log(1e5), log(5e6)))
  rows <- integer(); cols <- integer(); vals <- integer()
  for (j in seq_len(n)) {
    p <- profile[, match(label[j], types)] * gene_scale
    mu <- library_size[j] * p / sum(p) * rgamma(genes, shape = 5, rate = 5)
    x <- rpois(genes, mu)
    nz <- which(x > 0)
    rows <- c(rows, nz); cols <- c(cols, rep(j, length(nz))); vals <- c(vals, x[nz])
  }
  con <- gzfile(file.path(dir, "matrix.mtx.gz"), "w")
  writeLines(c("%%MatrixMarket matrix coordinate integer general", sprintf("%d %d %d", genes, n, length(vals))), con)
  writeLines(sprintf("%d %d %d", rows, cols, vals), con)
  close(con)
  cells <- sprintf("%s%03d", prefix, seq_len(n))
  writeLines(sprintf("gene%05d", seq_len(genes)), file.path(dir, "features.tsv"))
  writeLines(cells, file.path(dir, "barcodes.tsv"))
  utils::write.table(data.frame(cell_id = cells, cell_type = label), file.path(dir, "metadata.tsv"),
                     sep = "\t", quote = FALSE, row.names = FALSE)
}
write_side(file.path(out, "ref"), 70, rep(1, genes), "r")
write_side(file.path(out, "query"), 100, efficiency, "q")
