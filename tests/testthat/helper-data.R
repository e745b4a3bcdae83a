# Real data for the tests: ../shared/data beside the repository, or CELLPREDX_DATA.
shared_data_dir <- function() {
  dir <- Sys.getenv("CELLPREDX_DATA", "")
  if (!nzchar(dir)) {
    root <- normalizePath(file.path(testthat::test_path(), "..", ".."), mustWork = FALSE)
    dir <- file.path(dirname(root), "shared", "data")
  }
  dir
}

skip_without_data <- function(dataset) {
  if (!dir.exists(file.path(shared_data_dir(), dataset))) {
    testthat::skip(paste("no shared data for", dataset, "(set CELLPREDX_DATA)"))
  }
}

# A shared dataset as a features x cells dgCMatrix (`counts`) with its metadata (`meta`).
read_shared <- function(dataset) ReadCellData(file.path(shared_data_dir(), dataset))

# PBMC 3k (reference, 9 types) and Garnett's FACS-sorted PBMCs (query), subsampled: small enough
# for a few seconds of training.
pbmc_pair <- function(n_ref = 400, n_query = 150) {
  set.seed(42)
  ref <- read_shared("pbmc3k_seurat/rna")
  query <- read_shared("garnett_pbmc_facs_800/rna")
  # Platelets (14 of 2,638) would be one or two cells in a subsample.
  keep_ref <- sort(sample(which(ref$meta$cell_type != "Platelet"), n_ref))
  keep_query <- sort(sample(ncol(query$counts), n_query))
  list(ref = ref$counts[, keep_ref], ref_meta = ref$meta[keep_ref, ],
       query = query$counts[, keep_query], query_meta = query$meta[keep_query, ])
}

quick <- list(max_steps = 40, batch_size = 128)

# pbmc_pair() as Seurat objects, the reference's types in the metadata column "type". Seurat warns
# about the datasets' own gene names with "_"; that is not what the tests test.
seurat_pair <- function(pair) {
  ref <- suppressWarnings(SeuratObject::CreateSeuratObject(
    pair$ref, meta.data = data.frame(type = pair$ref_meta$cell_type, row.names = colnames(pair$ref))))
  list(ref = ref, query = suppressWarnings(SeuratObject::CreateSeuratObject(pair$query)))
}

# The types of toy_counts()' cells.
toy_types <- function(n) rep(c("T", "B"), length.out = n)

# Two separable cell types as counts (genes x cells, dgCMatrix): `n` cells alternating between
# the types (toy_types()), `genes` genes of which the first half are high in type "T"; `depth`
# scales the counts.
toy_counts <- function(n, depth = 1, genes = 150, seed = 1) {
  withr_seed <- .Random.seed_or_null()
  on.exit(restore_seed(withr_seed))
  set.seed(seed)
  type <- toy_types(n)
  rate <- outer(rep(c(2, 0.2), each = genes / 2), type == "T", function(a, t) ifelse(t, a, 2.2 - a))
  x <- matrix(rpois(length(rate), depth * rate), genes, n,
              dimnames = list(paste0("gene", seq_len(genes)), paste0("cell", seq_len(n))))
  Matrix::Matrix(x, sparse = TRUE)
}

.Random.seed_or_null <- function() if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv()) else NULL
restore_seed <- function(seed) if (!is.null(seed)) assign(".Random.seed", seed, globalenv())

tiny <- list(max_steps = 10, batch_size = 32)
