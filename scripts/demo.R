# `make demo`: CellPredX end to end on real data, as a Seurat user runs it.
#  1. The SNARE-seq subset shipped in inst/extdata (needs nothing beside the package): a reference
#     Seurat object with RNA, a query Seurat object with ATAC peaks; GeneActivity() adds the
#     query's gene activity from the mm10 gene table; TransferLabels() annotates it.
#  2. When the shared data are there (../shared/data or CELLPREDX_DATA): the full P1 pair of
#     ../shared/BENCHMARKS.md (9,190 cells, RNA -> gene activity of the same cells).
# Each prints accuracy and macro-F1 against the held-out labels (never shown to the method) and
# the time, and writes the annotated query (.rds) and plots (.png) into the output folder
# (CELLPREDX_DEMO_OUT, default ./demo-output).
suppressPackageStartupMessages({
  library(CellPredX)
  library(SeuratObject)
})
out_dir <- Sys.getenv("CELLPREDX_DEMO_OUT", "demo-output")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
out_dir <- normalizePath(out_dir)
cli::cli_h1("CellPredX demo")
info <- CellPredXInfo()
print(info)

# Seurat turns "_" into "-" in feature names (with a warning); peaks are named chrN-start-end.
peaks_assay_names <- function(counts) {
  rownames(counts) <- gsub("_", "-", rownames(counts))
  counts
}

report <- function(name, query, truth, seconds, determinants = NULL) {
  scores <- EvaluateLabels(query, truth)
  cli::cli_alert_success(paste0("{name}: accuracy {.strong {sprintf('%.3f', scores$accuracy)}}, macro-F1 ",
                                "{.strong {sprintf('%.3f', scores$macro_f1)}} on {scores$scored_cells} cells; ",
                                "{round(seconds, 1)} s for TransferLabels()"))
  cli::cli_alert_info(paste0("{name}: labels (predicted.id) right for {sprintf('%.3f', scores$label_accuracy)} of those cells, ",
                             "{sprintf('%.1f', 100 * scores$unknown_shared)}% called Unknown ",
                             "(the confusion plot shows the most probable type, as the accuracy above)"))
  rds <- file.path(out_dir, paste0(name, "_query.rds"))
  saveRDS(query, rds)
  umap <- file.path(out_dir, paste0(name, "_umap.png"))
  ggplot2::ggsave(umap, PlotEmbedding(query, color.by = "best.type") + ggplot2::ggtitle(paste("CellPredX embedding:", name)),
                  width = 8, height = 6, dpi = 100)
  confusion <- file.path(out_dir, paste0(name, "_confusion.png"))
  ggplot2::ggsave(confusion, PlotConfusion(query, truth), width = 8, height = 7, dpi = 100)
  files <- c(rds, umap, confusion)
  if (!is.null(determinants)) {
    dots <- file.path(out_dir, paste0(name, "_determinants.png"))
    ggplot2::ggsave(dots, PlotDeterminants(determinants, n = 4, ranking = "mean_attribution"), width = 8, height = 10, dpi = 100)
    files <- c(files, dots)
  }
  cli::cli_alert_info("Annotated query and plots written to {.path {files}}")
}

cli::cli_h2("1. SNARE-seq subset shipped with the package (RNA -> ATAC, different cells)")
example <- readRDS(system.file("extdata", "snareseq_subset.rds", package = "CellPredX"))
ref <- CreateSeuratObject(example$ref_rna, meta.data = example$ref_meta)
query <- CreateSeuratObject(peaks_assay_names(example$query_peaks), assay = "peaks")
cli::cli_alert("Reference: {ncol(ref)} cells x {nrow(ref)} genes (RNA); query: {ncol(query)} cells x {nrow(query)} peaks")
query <- GeneActivity(query, annotation = "mm10")
started <- Sys.time()
query <- TransferLabels(ref, query, ref.labels = "cell_type", query.assay = "ACTIVITY", interpret = TRUE)
seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
determinants <- Misc(query, "CellPredX")$determinants
print(determinants, n = 4)
report("snareseq_subset", query, example$query_meta$cell_type, seconds, determinants)

data_dir <- Sys.getenv("CELLPREDX_DATA", file.path(dirname(normalizePath(".")), "shared", "data"))
snare <- file.path(data_dir, "snareseq_mouse_cortex")
if (!dir.exists(snare)) {
  cli::cli_alert_info("No shared data at {.path {snare}}: the full P1 pair is skipped (set CELLPREDX_DATA to run it).")
  quit(status = 0)
}

cli::cli_h2("2. Full P1 pair: SNARE-seq RNA -> gene activity of the same 9,190 cells")
read_counts <- function(modality) ReadCellData(file.path(snare, modality))$counts
meta <- utils::read.delim(file.path(snare, "rna", "metadata.tsv"), stringsAsFactors = FALSE, row.names = "cell_id")
cells <- rownames(meta)[meta$cell_type != "Mis"]
ref <- CreateSeuratObject(read_counts("rna")[, cells], meta.data = meta[cells, c("cell_type", "batch")])
query <- CreateSeuratObject(peaks_assay_names(read_counts("atac_peaks")[, cells]), assay = "peaks")
query[["ACTIVITY"]] <- CreateAssayObject(counts = read_counts("atac_gene_activity")[, cells])
cli::cli_alert("Reference: {ncol(ref)} cells x {nrow(ref)} genes; query: the same cells, {nrow(query[['ACTIVITY']])} genes of activity and {nrow(query[['peaks']])} peaks")
started <- Sys.time()
query <- TransferLabels(ref, query, ref.labels = "cell_type", query.assay = "ACTIVITY", interpret = TRUE)
seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
report("P1_snareseq", query, meta[cells, "cell_type"], seconds, Misc(query, "CellPredX")$determinants)
