# What every benchmark script shares: command-line options, where the data are, the pairs of
# ../shared/BENCHMARKS.md and a reader of their MatrixMarket directories.
# Sourced from the repository root: source("bench/common.R").

bench_args <- commandArgs(trailingOnly = TRUE)
bench_extra <- character()
if ("--" %in% bench_args) {
  cut <- match("--", bench_args)
  bench_extra <- bench_args[-seq_len(cut)]
  bench_args <- bench_args[seq_len(cut - 1)]
}
option <- function(name, default) {
  hit <- match(paste0("--", name), bench_args)
  if (is.na(hit)) default else bench_args[[hit + 1]]
}
split <- function(x) strsplit(x, ",", fixed = TRUE)[[1]]

root <- normalizePath(".")
data_dir <- Sys.getenv("CELLPREDX_DATA", file.path(dirname(root), "shared", "data"))
if (!dir.exists(data_dir)) stop("benchmark data not found at ", data_dir, "; set CELLPREDX_DATA")

snare <- file.path(data_dir, "snareseq_mouse_cortex")
read_metadata <- function(dir) utils::read.delim(file.path(dir, "metadata.tsv"), check.names = FALSE, stringsAsFactors = FALSE)
snare_meta <- read_metadata(file.path(snare, "rna"))
early <- snare_meta$batch %in% c("09A", "09B", "09C", "09D", "09E", "09F")
not_mis <- snare_meta$cell_type != "Mis"

# Each pair: scenario, reference and query directories, the cells each side uses (NULL = all)
# and, for P5, how reference types map onto the query's coarser labels; `values` says what
# P4's and P6's matrices hold (bench/pairs-wide.R: proteins, log values; the rest are counts).
bench_pairs <- list(
  P1 = list(scenario = "rna_atac_matched", ref = file.path(snare, "rna"), query = file.path(snare, "atac_gene_activity"),
            ref_cells = snare_meta$cell_id[not_mis], query_cells = snare_meta$cell_id[not_mis]),
  P2 = list(scenario = "rna_atac_unmatched", ref = file.path(snare, "rna"), query = file.path(snare, "atac_gene_activity"),
            ref_cells = snare_meta$cell_id[not_mis & early], query_cells = snare_meta$cell_id[not_mis & !early]),
  P3 = list(scenario = "atac_atac", ref = file.path(snare, "atac_peaks"), query = file.path(snare, "atac_peaks"),
            ref_cells = snare_meta$cell_id[not_mis & early], query_cells = snare_meta$cell_id[not_mis & !early]),
  P4 = list(scenario = "rna_rna", ref = file.path(data_dir, "cite_asap_adt", "citeseq"),
            query = file.path(data_dir, "cite_asap_adt", "asapseq"), values = c(ref = "proteins", query = "proteins")),
  P5 = list(scenario = "rna_rna", ref = file.path(data_dir, "pbmc3k_seurat", "rna"),
            query = file.path(data_dir, "garnett_pbmc_facs_800", "rna"),
            map = data.frame(from = c("B", "Naive CD4 T", "Memory CD4 T", "CD8 T"),
                             to = c("B cells", "CD4 T cells", "CD4 T cells", "CD8 T cells"))),
  P6 = list(scenario = "rna_rna", ref = file.path(data_dir, "scclassify_pancreas_xin_wang", "xin"),
            query = file.path(data_dir, "scclassify_pancreas_xin_wang", "wang"), values = c(ref = "log", query = "log"))
)
# The wider benchmark's pairs (W1-W16) join bench_pairs; it also defines pair_values().
source(file.path(root, "bench", "pairs-wide.R"))

check_pairs <- function(wanted) {
  unknown <- setdiff(wanted, names(bench_pairs))
  if (length(unknown)) stop("unknown pair(s): ", paste(unknown, collapse = ", "))
  wanted
}

# Both sides of a pair, read into R (counts restricted to the pair's cells, with their metadata).
read_pair <- function(id) {
  check_derived(id)
  pair <- bench_pairs[[id]]
  list(ref = CellPredX::ReadCellData(pair$ref, pair$ref_cells), query = CellPredX::ReadCellData(pair$query, pair$query_cells))
}

# The peak resident memory of this R process so far, in MB (Linux).
peak_rss_mb <- function() {
  line <- grep("^VmHWM:", readLines("/proc/self/status"), value = TRUE)
  if (length(line)) as.numeric(gsub("[^0-9]", "", line)) / 1024 else NA_real_
}

# Appends `rows` (a data frame) to a TSV, writing the header first if the file is new.
append_tsv <- function(rows, path) {
  dir.create(dirname(path), showWarnings = FALSE, recursive = TRUE)
  new <- !file.exists(path)
  utils::write.table(rows, path, sep = "\t", quote = FALSE, row.names = FALSE, col.names = new, append = !new)
}
