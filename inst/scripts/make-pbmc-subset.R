# Makes inst/extdata/pbmc_subset.rds, the RNA -> RNA example (two sequencing protocols) of the
# vignettes, from ../shared/data (or $CELLPREDX_DATA). Run from the repository root:
#   Rscript inst/scripts/make-pbmc-subset.R
# Reference: 700 cells of 10x PBMC 3k (v1 chemistry, Seurat tutorial annotation, 9 types), drawn
# in proportion to their type with at least 14 of each. Query: the 800 FACS-sorted PBMCs of
# Garnett's test data (10x v1, sorted B / CD4 T / CD8 T populations), on the reference's genes.
data_dir <- Sys.getenv("CELLPREDX_DATA", file.path(dirname(normalizePath(".")), "shared", "data"))
read_dataset <- function(dir) CellPredX::ReadCellData(file.path(data_dir, dir))
ref <- read_dataset("pbmc3k_seurat/rna")
query <- read_dataset("garnett_pbmc_facs_800/rna")

set.seed(2017)
share <- table(ref$meta$cell_type) / ncol(ref$counts)
per_type <- pmin(table(ref$meta$cell_type), pmax(14, round(700 * share)))
ref_cells <- unlist(lapply(names(per_type), function(type) sample(which(ref$meta$cell_type == type), per_type[[type]])))
genes <- intersect(rownames(ref$counts), rownames(query$counts))

subset <- list(
  ref_rna = ref$counts[genes, ref_cells],
  ref_meta = data.frame(cell_type = ref$meta$cell_type[ref_cells], row.names = colnames(ref$counts)[ref_cells]),
  query_rna = query$counts[genes, ],
  query_meta = data.frame(cell_type = query$meta$cell_type, row.names = colnames(query$counts)),
  source = paste("Reference: 10x Genomics PBMC 3k with the Seurat tutorial's annotation, as distributed by",
                 "github.com/rnabioco/clustifyr (MIT); query: FACS-sorted PBMCs (Zheng et al. 2017) from",
                 "github.com/cole-trapnell-lab/garnett test data (MIT); subset by inst/scripts/make-pbmc-subset.R")
)
out <- file.path("inst", "extdata", "pbmc_subset.rds")
saveRDS(subset, out, compress = "xz")
cat(sprintf("%s: %d reference cells (%d types), %d query cells, %d genes, %.2f MB\n", out, ncol(subset$ref_rna),
            length(per_type), ncol(subset$query_rna), length(genes), file.size(out) / 2^20))
