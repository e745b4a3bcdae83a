# The wider benchmark (issue 18): P1-P6 of bench/common.R, on which the presets were chosen
# (in-sample), plus pairs W1-W16 built from ../shared/data only, on which nothing was tuned.
# bench/PAIRS.md says where each comes from and why it is there.
#
# Sourced by bench/common.R after `bench_pairs`: the W pairs are added to `bench_pairs`, so every
# script that takes a pair id (the peers, bench/centroid.R, bench/robust.R) takes them as well.
# `wide_pair_ids` lists the whole wider benchmark in order.
#
# Fields beyond those of bench_pairs (all optional):
#   title        one line for tables;
#   values       what the matrices hold, c(ref = , query = ): "counts", "log" (log-normalised or
#                log-TPM-like), "scaled" (z-scores, negative values) or "proteins" (ADT counts):
#                peers and the centroid baseline normalise counts and take the rest as they are;
#   truth        the metadata.tsv that `cellpredx evaluate` scores against when the query's labels
#                must be collapsed first (written by bench/derive.R; default: the query's own);
#   derived      the bench/derive.R dataset(s) the pair reads (run `Rscript bench/derive.R` first);
#   small        TRUE when one CellPredX run takes well under a minute here (bench-robust's quick
#                run uses these).
# Cell subsets are drawn here, at source time, with fixed seeds, so every script sees the same
# cells; bench/derive.R also writes them to bench/cache/derived/cells/ for inspection.

cache_dir <- Sys.getenv("CELLPREDX_BENCH_CACHE", file.path(root, "bench", "cache"))
derived_dir <- file.path(cache_dir, "derived")
derived <- function(...) file.path(derived_dir, ...)

# `n` cells of each type (all of a smaller type), drawn with `seed`; returned in the dataset's
# order so that the written list does not depend on how the draw went. The RNG kind is fixed so
# that another R default cannot change the draw.
per_type_sample <- function(cells, types, n, seed) {
  set.seed(seed, kind = "Mersenne-Twister", normal.kind = "Inversion", sample.kind = "Rejection")
  keep <- unlist(lapply(sort(unique(types)), function(t) {
    pool <- cells[types == t]
    if (length(pool) <= n) pool else sample(pool, n)
  }))
  cells[cells %in% keep]
}

# A stratified split of `cells` into two halves per type (seeded), for within-dataset pairs.
stratified_half <- function(cells, types, seed) {
  set.seed(seed, kind = "Mersenne-Twister", normal.kind = "Inversion", sample.kind = "Rejection")
  first <- unlist(lapply(sort(unique(types)), function(t) {
    pool <- cells[types == t]
    sample(pool, floor(length(pool) / 2))
  }))
  list(first = cells[cells %in% first], second = cells[!cells %in% first])
}

pbmc3k <- file.path(data_dir, "pbmc3k_seurat", "rna")
garnett <- file.path(data_dir, "garnett_pbmc_facs_800", "rna")
citeseq <- file.path(data_dir, "cite_asap_adt", "citeseq")
asapseq <- file.path(data_dir, "cite_asap_adt", "asapseq")
xin <- file.path(data_dir, "scclassify_pancreas_xin_wang", "xin")
wang <- file.path(data_dir, "scclassify_pancreas_xin_wang", "wang")
chetah <- file.path(data_dir, "chetah_headneck_ref", "headneck")
granja <- file.path(data_dir, "granja_bmmc_atac_epichaos")
pbmc68k <- file.path(data_dir, "pbmc68k_reduced_scanpy", "rna_lognorm")

pbmc3k_meta <- read_metadata(pbmc3k)
cite_meta <- read_metadata(citeseq)
asap_meta <- read_metadata(asapseq)
granja_peaks_meta <- read_metadata(file.path(granja, "atac_peaks"))

# P5's label map (pbmc3k's cluster types onto Garnett's FACS types), reused by its variants.
p5_map <- bench_pairs$P5$map
# CHETAH's head-and-neck types onto Garnett's FACS types (chetah_headneck_ref/README.md;
# reg. T cells are CD4 T cells).
chetah_to_facs <- data.frame(from = c("B cell", "CD4 T cell", "reg. T cell", "CD8 T cell"),
                             to = c("B cells", "CD4 T cells", "CD4 T cells", "CD8 T cells"))
# CHETAH's types onto pbmc3k's, after bench/derive.R has collapsed pbmc3k's truth to "CD4 T"
# (Naive + Memory) and "Mono" (CD14+ + FCGR3A+): the README's mapping, with Macrophage ~ Mono.
chetah_to_pbmc3k <- data.frame(from = c("B cell", "CD4 T cell", "reg. T cell", "CD8 T cell", "Dendritic", "Macrophage"),
                               to = c("B", "CD4 T", "CD4 T", "CD8 T", "DC", "Mono"))
# scanpy's pbmc68k bulk labels onto Garnett's FACS types (T-cell subsets collapsed).
pbmc68k_to_facs <- data.frame(
  from = c("CD19+ B", "CD4+/CD25 T Reg", "CD4+/CD45RO+ Memory", "CD4+/CD45RA+/CD25- Naive T", "CD8+ Cytotoxic T",
           "CD8+/CD45RA+ Naive Cytotoxic"),
  to = c("B cells", "CD4 T cells", "CD4 T cells", "CD4 T cells", "CD8 T cells", "CD8 T cells"))

granja_split <- stratified_half(granja_peaks_meta$cell_id, granja_peaks_meta$cell_type, seed = 18)
counts2 <- c(ref = "counts", query = "counts")

wide_extra <- list(
  W1 = list(title = "pancreas Wang -> Xin (P6 reversed)", scenario = "rna_rna", ref = wang, query = xin,
            values = c(ref = "log", query = "log"), small = TRUE),
  W2 = list(title = "proteins ASAP -> CITE (P4 reversed)", scenario = "rna_rna", ref = asapseq, query = citeseq,
            ref_cells = asap_meta$cell_id[asap_meta$cell_type != "unknown"],
            values = c(ref = "proteins", query = "proteins"), small = TRUE),
  W3 = list(title = "PBMC Garnett FACS -> pbmc3k (P5 reversed)", scenario = "rna_rna", ref = garnett, query = pbmc3k,
            truth = derived("truth", "pbmc3k-facs-types.tsv"), derived = "truth", values = counts2, small = TRUE),
  W4 = list(title = "P5, reference 10 cells per type", scenario = "rna_rna", ref = pbmc3k, query = garnett, map = p5_map,
            ref_cells = per_type_sample(pbmc3k_meta$cell_id, pbmc3k_meta$cell_type, 10, seed = 18),
            values = counts2, small = TRUE),
  W5 = list(title = "P5, reference 35 cells per type", scenario = "rna_rna", ref = pbmc3k, query = garnett, map = p5_map,
            ref_cells = per_type_sample(pbmc3k_meta$cell_id, pbmc3k_meta$cell_type, 35, seed = 18),
            values = counts2, small = TRUE),
  W6 = list(title = "P5, reference 100 cells per type", scenario = "rna_rna", ref = pbmc3k, query = garnett, map = p5_map,
            ref_cells = per_type_sample(pbmc3k_meta$cell_id, pbmc3k_meta$cell_type, 100, seed = 18),
            values = counts2, small = TRUE),
  W7 = list(title = "P5, reference rescaled to read-count-like depth", scenario = "rna_rna",
            ref = derived("pbmc3k_readlike"), query = garnett, map = p5_map, derived = "pbmc3k_readlike",
            values = counts2, small = TRUE),
  W8 = list(title = "P5, reference restricted to 300 genes", scenario = "rna_rna",
            ref = derived("pbmc3k_hvg300"), query = garnett, map = p5_map, derived = "pbmc3k_hvg300",
            values = counts2, small = TRUE),
  W9 = list(title = "P5 without B in the reference (open set)", scenario = "rna_rna", ref = pbmc3k, query = garnett,
            map = p5_map, ref_cells = pbmc3k_meta$cell_id[pbmc3k_meta$cell_type != "B"], values = counts2, small = TRUE),
  W10 = list(title = "P4 without B in the reference (open set)", scenario = "rna_rna", ref = citeseq, query = asapseq,
             ref_cells = cite_meta$cell_id[cite_meta$cell_type != "B"],
             values = c(ref = "proteins", query = "proteins"), small = TRUE),
  W11 = list(title = "CHETAH Smart-seq2 head-neck -> pbmc3k", scenario = "rna_rna", ref = chetah, query = pbmc3k,
             map = chetah_to_pbmc3k, truth = derived("truth", "pbmc3k-coarse.tsv"), derived = "truth",
             values = c(ref = "log", query = "counts"), small = TRUE),
  W12 = list(title = "CHETAH Smart-seq2 head-neck -> Garnett FACS", scenario = "rna_rna", ref = chetah, query = garnett,
             map = chetah_to_facs, values = c(ref = "log", query = "counts"), small = TRUE),
  W13 = list(title = "bone marrow RNA (scaled) -> ATAC gene activity", scenario = "rna_atac_unmatched",
             ref = file.path(granja, "rna_scaled"), query = file.path(granja, "atac_gene_activity"),
             values = c(ref = "scaled", query = "counts"), small = TRUE),
  W14 = list(title = "bone marrow ATAC peaks, stratified halves", scenario = "atac_atac",
             ref = file.path(granja, "atac_peaks"), query = file.path(granja, "atac_peaks"),
             ref_cells = granja_split$first, query_cells = granja_split$second, values = counts2, small = TRUE),
  W15 = list(title = "pbmc68k (scanpy, log) -> Garnett FACS", scenario = "rna_rna", ref = pbmc68k, query = garnett,
             map = pbmc68k_to_facs, values = c(ref = "log", query = "counts"), small = TRUE),
  W16 = list(title = "pbmc3k RNA -> bone marrow ATAC gene activity", scenario = "rna_atac_unmatched", ref = pbmc3k,
             query = file.path(granja, "atac_gene_activity"),
             map = data.frame(from = c("B", "CD8 T"), to = c("17_B", "19_CD8.N")), values = counts2, small = TRUE)
)
stopifnot(!any(names(wide_extra) %in% names(bench_pairs)))
bench_pairs <- c(bench_pairs, wide_extra)
wide_pair_ids <- names(bench_pairs)
in_sample_pairs <- paste0("P", 1:6)  # the presets were chosen on these

# What a pair's side holds (see `values` above); P1-P6 without the field hold counts, except P4's
# proteins and P6's log values, which bench/common.R records.
pair_values <- function(pair_id, side = c("ref", "query")) {
  side <- match.arg(side)
  v <- bench_pairs[[pair_id]]$values
  if (is.null(v)) "counts" else unname(v[[side]])
}

# Stops with the command to run when a pair's derived data are missing.
check_derived <- function(pair_id) {
  needed <- bench_pairs[[pair_id]]$derived
  missing <- needed[!dir.exists(derived(needed))]
  if (length(missing)) stop(pair_id, " reads ", paste(derived(missing), collapse = ", "),
                            ": run `scripts/with-env Rscript bench/derive.R` first", call. = FALSE)
  invisible(TRUE)
}
