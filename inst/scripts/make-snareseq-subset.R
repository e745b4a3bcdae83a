# Makes inst/extdata/snareseq_subset.rds, the small SNARE-seq example the demo, the examples and
# the vignettes run on, from the full dataset in ../shared/data/snareseq_mouse_cortex (or
# $CELLPREDX_DATA/snareseq_mouse_cortex). Run from the repository root:
#   Rscript inst/scripts/make-snareseq-subset.R
# Reference: 1,000 cells of libraries 09A-09F (RNA and ATAC peaks); query: 800 other cells of
# libraries 09G-09L (ATAC peaks and gene activity), both without the unresolved "Mis" group. Reference cells are
# drawn in proportion to their type with at least 20 of each type, so that rare types can be
# learnt; query cells are drawn uniformly.
data_dir <- Sys.getenv("CELLPREDX_DATA", file.path(dirname(normalizePath(".")), "shared", "data"))
snare <- file.path(data_dir, "snareseq_mouse_cortex")
if (!dir.exists(snare)) stop("SNARE-seq data not found at ", snare, "; set CELLPREDX_DATA")

read_counts <- function(modality) CellPredX::ReadCellData(file.path(snare, modality))$counts
meta <- utils::read.delim(file.path(snare, "rna", "metadata.tsv"), stringsAsFactors = FALSE)
meta <- meta[meta$cell_type != "Mis", ]
early <- meta$batch %in% c("09A", "09B", "09C", "09D", "09E", "09F")

set.seed(2019)
pool <- meta[early, ]
share <- table(pool$cell_type) / nrow(pool)
per_type <- pmin(table(pool$cell_type), pmax(20, round(1000 * share)))
ref_cells <- unlist(lapply(names(per_type), function(type) sample(pool$cell_id[pool$cell_type == type], per_type[[type]])))
query_cells <- sample(meta$cell_id[!early], 800)

columns <- c("cell_type", "cell_type_fine", "batch")
subset <- list(
  ref_rna = read_counts("rna")[, ref_cells],
  ref_meta = data.frame(meta[match(ref_cells, meta$cell_id), columns], row.names = ref_cells),
  ref_peaks = read_counts("atac_peaks")[, ref_cells],
  query_peaks = read_counts("atac_peaks")[, query_cells],
  query_activity = read_counts("atac_gene_activity")[, query_cells],
  query_meta = data.frame(meta[match(query_cells, meta$cell_id), columns], row.names = query_cells),
  source = paste("SNARE-seq adult mouse cortex (Chen, Lake & Zhang 2019, Nat Biotechnol; GEO GSE126074),",
                 "as distributed by github.com/PeterZZQ/scMoMaT (MIT licence), subset by inst/scripts/make-snareseq-subset.R")
)
# Peaks no cell of the subset has are dropped; the gene activity keeps every gene.
open_peaks <- Matrix::rowSums(subset$ref_peaks) + Matrix::rowSums(subset$query_peaks) > 0
subset$ref_peaks <- subset$ref_peaks[open_peaks, ]
subset$query_peaks <- subset$query_peaks[open_peaks, ]
out <- file.path("inst", "extdata", "snareseq_subset.rds")
saveRDS(subset, out, compress = "xz")
cat(sprintf("%s: %d reference cells (%d types), %d query cells, %d genes, %d peaks, %.2f MB\n", out,
            ncol(subset$ref_rna), length(unique(subset$ref_meta$cell_type)), ncol(subset$query_peaks),
            nrow(subset$ref_rna), nrow(subset$query_peaks), file.size(out) / 2^20))
