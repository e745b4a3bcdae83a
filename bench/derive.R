# Writes the derived datasets the wider benchmark's pairs read (bench/pairs-wide.R, bench/PAIRS.md)
# under bench/cache/derived/ (git-ignored; CELLPREDX_BENCH_CACHE moves it), from ../shared/data
# only and deterministically: fixed seeds, the same bytes on every run (derived/MANIFEST.md5 lists
# the files' checksums, so a re-run can be compared). Never commit what it writes.
#
#   pbmc3k_readlike/  pbmc3k's counts rescaled to read-count-like library sizes (W7)
#   pbmc3k_hvg300/    pbmc3k's counts restricted to its 300 most variable genes (W8)
#   truth/            query labels collapsed for scoring (W3, W11)
#   cells/            every pair's reference and query cell lists, for inspection
#
# Usage (from the repository root): scripts/with-env Rscript bench/derive.R [--force]

source("bench/common.R")

force <- "--force" %in% bench_args
dir.create(derived_dir, recursive = TRUE, showWarnings = FALSE)

# A MatrixMarket dataset directory as bench/common.R's pairs read it: features x cells.
read_mtx <- function(dir) {
  m <- methods::as(Matrix::readMM(file.path(dir, "matrix.mtx.gz")), "CsparseMatrix")
  dimnames(m) <- list(readLines(file.path(dir, "features.tsv")), readLines(file.path(dir, "barcodes.tsv")))
  m
}

# Writes `m` (features x cells) and `meta` as a dataset directory. Integer-valued matrices are
# written as MatrixMarket "integer" so that every reader sees counts; the gzip stream comes from
# R's zlib, whose header carries no time stamp, so the bytes repeat.
write_mtx <- function(m, meta, dir) {
  unlink(dir, recursive = TRUE)
  dir.create(dir, recursive = TRUE)
  m <- methods::as(m, "TsparseMatrix")
  integral <- all(m@x == round(m@x))
  con <- gzfile(file.path(dir, "matrix.mtx.gz"), "w")
  writeLines(c(sprintf("%%%%MatrixMarket matrix coordinate %s general", if (integral) "integer" else "real"),
               sprintf("%d %d %d", nrow(m), ncol(m), length(m@x))), con)
  order <- order(m@j, m@i)  # column-major, as writeMM does
  value <- if (integral) sprintf("%d", as.integer(m@x[order])) else formatC(m@x[order], digits = 6, format = "g")
  writeLines(paste(m@i[order] + 1L, m@j[order] + 1L, value), con)
  close(con)
  writeLines(rownames(m), file.path(dir, "features.tsv"))
  writeLines(colnames(m), file.path(dir, "barcodes.tsv"))
  utils::write.table(meta, file.path(dir, "metadata.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
}

derive <- function(name, make) {
  if (dir.exists(derived(name)) && !force) {
    cat("kept", derived(name), "(--force rewrites it)\n")
    return(invisible())
  }
  make(derived(name))
  cat("wrote", derived(name), "\n")
}

pbmc3k_counts <- read_mtx(pbmc3k)
stopifnot(identical(colnames(pbmc3k_counts), pbmc3k_meta$cell_id))

# W7: a full-length, read-based protocol counts reads, not molecules: libraries of 10^5-10^6 per
# cell and a gene-specific factor (length, amplification). Each cell's counts are scaled to a
# library drawn log-normally around 300,000 reads (sd 0.5 on the log scale) and each gene's by a
# factor drawn log-normally around 1 (sd 0.5), then rounded. The cells and labels are pbmc3k's.
derive("pbmc3k_readlike", function(dir) {
  set.seed(7, kind = "Mersenne-Twister", normal.kind = "Inversion", sample.kind = "Rejection")
  library_target <- stats::rlnorm(ncol(pbmc3k_counts), log(3e5), 0.5)
  gene_factor <- stats::rlnorm(nrow(pbmc3k_counts), 0, 0.5)
  cell_factor <- library_target / Matrix::colSums(pbmc3k_counts)
  reads <- Matrix::Diagonal(x = gene_factor) %*% pbmc3k_counts %*% Matrix::Diagonal(x = cell_factor)
  reads@x <- round(reads@x)
  reads <- Matrix::drop0(reads)
  dimnames(reads) <- dimnames(pbmc3k_counts)
  write_mtx(reads, pbmc3k_meta, dir)
})

# W8: a targeted panel of a few hundred genes: the reference's 300 genes of highest variance of
# log-normalised values (log1p of counts per 10,000), chosen on the reference alone.
derive("pbmc3k_hvg300", function(dir) {
  lognorm <- log1p(pbmc3k_counts %*% Matrix::Diagonal(x = 1e4 / Matrix::colSums(pbmc3k_counts)))
  mean <- Matrix::rowMeans(lognorm)
  variance <- Matrix::rowMeans(lognorm^2) - mean^2
  keep <- sort(order(variance, decreasing = TRUE)[1:300])
  write_mtx(pbmc3k_counts[keep, ], pbmc3k_meta, dir)
})

# Query labels collapsed for scoring, where a reference's types are coarser than the query's in a
# way evaluate's --map (which renames predictions only) cannot express.
derive("truth", function(dir) {
  unlink(dir, recursive = TRUE)
  dir.create(dir)
  collapse <- function(types, from, to) ifelse(types %in% from, to[match(types, from)], types)
  # W3 (Garnett FACS -> pbmc3k): pbmc3k's T-cell clusters as the FACS types; its monocytes, NK,
  # DC and platelets have no FACS counterpart and stay as they are (novel).
  facs <- collapse(pbmc3k_meta$cell_type, c("B", "Naive CD4 T", "Memory CD4 T", "CD8 T"),
                   c("B cells", "CD4 T cells", "CD4 T cells", "CD8 T cells"))
  utils::write.table(data.frame(cell_id = pbmc3k_meta$cell_id, cell_type = facs),
                     file.path(dir, "pbmc3k-facs-types.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
  # W11 (CHETAH -> pbmc3k): CD4 T subsets into "CD4 T", both monocyte types into "Mono".
  coarse <- collapse(pbmc3k_meta$cell_type, c("Naive CD4 T", "Memory CD4 T", "CD14+ Mono", "FCGR3A+ Mono"),
                     c("CD4 T", "CD4 T", "Mono", "Mono"))
  utils::write.table(data.frame(cell_id = pbmc3k_meta$cell_id, cell_type = coarse),
                     file.path(dir, "pbmc3k-coarse.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
})

# Every pair's cell lists (NULL = all cells: no file), rewritten each run: they are cheap.
cells_dir <- derived("cells")
dir.create(cells_dir, showWarnings = FALSE)
for (id in wide_pair_ids) {
  for (side in c("ref", "query")) {
    cells <- bench_pairs[[id]][[paste0(side, "_cells")]]
    if (!is.null(cells)) writeLines(cells, file.path(cells_dir, sprintf("%s-%s.txt", id, side)))
  }
}

files <- sort(list.files(derived_dir, recursive = TRUE))
files <- files[files != "MANIFEST.md5"]
writeLines(sprintf("%s  %s", tools::md5sum(file.path(derived_dir, files)), files), derived("MANIFEST.md5"))
cat("wrote", derived("MANIFEST.md5"), "\n")
