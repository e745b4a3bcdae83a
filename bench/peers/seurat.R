# Seurat 4's label transfer (FindTransferAnchors + TransferData) on one benchmark pair, as its own
# process so that bench/run.R can measure it. Writes <out>/predictions.tsv (the format
# `cellpredx evaluate` reads) and <out>/run.json. The query's labels are never read.
#
# The reduction each scenario calls for:
#   RNA -> gene activity (P1, P2): "cca", as Signac's scATAC integration vignette.
#   RNA -> RNA and proteins (P4-P6): "pcaproject" (proteins CLR-normalised, Seurat's ADT default).
#   Counts are log-normalised; log or scaled values (P6, some wider pairs) are used as they are.
#   peaks -> peaks (P3): "lsiproject" onto a TF-IDF + SVD LSI of the reference computed here as
#     Signac's RunTFIDF (method 1) and RunSVD would (Signac is not installable here), dims 2:30.
# Confidence = prediction.score.max; open-set score (log_doubt column) = 1 - prediction.score.max.
#
# Usage: Rscript bench/peers/seurat.R --pair P5 --out DIR

source("bench/common.R")
source("bench/harness.R")
suppressPackageStartupMessages(library(Seurat))

pair_id <- check_pairs(option("pair", NA))
out_dir <- option("out", NA)
if (is.na(out_dir)) stop("--out DIR is required")
pair <- bench_pairs[[pair_id]]
data <- read_pair(pair_id)
ref_labels <- data$ref$meta$cell_type
ref_counts <- data$ref$counts
query_counts <- data$query$counts  # counts only: the query's metadata (labels) stays unused

started <- Sys.time()
# Seurat turns "_" into "-" in feature names (with a warning) and would then miss them in the
# query: rename both sides first, then keep the features both sides measure.
rownames(ref_counts) <- gsub("_", "-", rownames(ref_counts), fixed = TRUE)
rownames(query_counts) <- gsub("_", "-", rownames(query_counts), fixed = TRUE)
shared <- intersect(rownames(ref_counts), rownames(query_counts))
ref <- CreateSeuratObject(ref_counts[shared, ])
query <- CreateSeuratObject(query_counts[shared, ])
ref$cell_type <- ref_labels
dims <- 1:30

# Signac's RunTFIDF, method 1: log1p(term frequency x inverse document frequency x 10,000).
tf_idf <- function(counts) {
  tf <- counts %*% Matrix::Diagonal(x = 1 / pmax(Matrix::colSums(counts), 1))
  idf <- ncol(counts) / pmax(Matrix::rowSums(counts), 1)
  out <- log1p(Matrix::Diagonal(x = idf) %*% tf * 1e4)
  dimnames(out) <- dimnames(counts)
  methods::as(out, "CsparseMatrix")
}

# Log or scaled values (pair_values: P6 and some wider-benchmark pairs) go into the data slot as
# they are; counts are log-normalised (to `scale_factor` per cell).
normalise <- function(object, values, scale_factor = 1e4) {
  if (values %in% c("log", "scaled")) {
    SetAssayData(object, slot = "data", new.data = GetAssayData(object, slot = "counts"))
  } else {
    NormalizeData(object, scale.factor = scale_factor, verbose = FALSE)
  }
}
ref_values <- pair_values(pair_id, "ref")
query_values <- pair_values(pair_id, "query")

if (pair$scenario %in% c("rna_atac_matched", "rna_atac_unmatched")) {
  variant <- "cca"
  ref <- normalise(ref, ref_values)
  # Signac's vignette normalises gene activities to the median count depth.
  query <- normalise(query, query_values, scale_factor = stats::median(query$nCount_RNA))
  features <- shared  # the SNARE-seq matrices hold 1,677 pre-selected genes: use all of them
  ref <- ScaleData(ref, features = features, verbose = FALSE)
  query <- ScaleData(query, features = features, verbose = FALSE)
  anchors <- FindTransferAnchors(ref, query, features = features, reduction = "cca", dims = dims, verbose = FALSE)
  predicted <- TransferData(anchors, refdata = ref$cell_type, weight.reduction = "cca", dims = dims, verbose = FALSE)
} else if (pair$scenario == "atac_atac") {
  variant <- "lsiproject"
  ref <- SetAssayData(ref, slot = "data", new.data = tf_idf(ref_counts[shared, ]))
  query <- SetAssayData(query, slot = "data", new.data = tf_idf(query_counts[shared, ]))
  ref_data <- GetAssayData(ref, slot = "data")
  svd <- irlba::irlba(ref_data, nv = 50)
  # As Signac's RunSVD: cells' embeddings are the right singular vectors, each standardised;
  # the singular values go in misc$d, where ProjectSVD(mode = "lsi") looks for them.
  embeddings <- scale(svd$v)
  dimnames(embeddings) <- list(colnames(ref_data), paste0("LSI_", 1:50))
  loadings <- svd$u
  dimnames(loadings) <- list(rownames(ref_data), paste0("LSI_", 1:50))
  ref[["lsi"]] <- CreateDimReducObject(embeddings = embeddings, loadings = loadings, key = "LSI_", assay = "RNA",
                                       stdev = svd$d / sqrt(max(1, ncol(ref_data) - 1)), misc = svd)
  dims <- 2:30  # component 1 follows sequencing depth
  VariableFeatures(ref) <- shared  # FindTransferAnchors' default feature set
  anchors <- FindTransferAnchors(ref, query, reference.reduction = "lsi", reduction = "lsiproject", dims = dims,
                                 verbose = FALSE)
  # Weights come from the query's projection onto the reference LSI (no query LSI of its own).
  projected <- Seurat:::ProjectSVD(ref[["lsi"]], GetAssayData(query, slot = "data"), mode = "lsi", verbose = FALSE)
  colnames(projected) <- paste0("LSI_", 1:50)
  query[["lsi"]] <- CreateDimReducObject(embeddings = projected, key = "LSI_", assay = "RNA")
  predicted <- TransferData(anchors, refdata = ref$cell_type, weight.reduction = query[["lsi"]], dims = dims,
                            verbose = FALSE)
} else {
  variant <- "pcaproject"
  if (ref_values == "proteins") {
    ref <- NormalizeData(ref, normalization.method = "CLR", margin = 2, verbose = FALSE)
    query <- NormalizeData(query, normalization.method = "CLR", margin = 2, verbose = FALSE)
    features <- shared
  } else {
    ref <- normalise(ref, ref_values)
    query <- normalise(query, query_values)
    ref <- FindVariableFeatures(ref, nfeatures = 2000, verbose = FALSE)
    features <- VariableFeatures(ref)
  }
  ref <- ScaleData(ref, features = features, verbose = FALSE)
  ref <- RunPCA(ref, features = features, npcs = max(dims), verbose = FALSE)
  anchors <- FindTransferAnchors(ref, query, features = features, reduction = "pcaproject", dims = dims,
                                 verbose = FALSE)
  predicted <- TransferData(anchors, refdata = ref$cell_type, dims = dims, verbose = FALSE)
}
fit_predict_seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))

score_columns <- setdiff(grep("^prediction.score.", names(predicted), value = TRUE), "prediction.score.max")
scores <- as.matrix(predicted[, score_columns, drop = FALSE])
# TransferData makes the types' names syntactic in these columns: take the names from the labels.
types <- sort(unique(ref_labels))
# (Type names that make.names changes, e.g. "01_HSC", may also come through unchanged: try both.)
score_names <- sub("^prediction.score.", "", score_columns)
type_index <- match(score_names, make.names(types))
type_index[is.na(type_index)] <- match(score_names[is.na(type_index)], types)
colnames(scores) <- types[type_index]
write_predictions(file.path(out_dir, "predictions.tsv"), colnames(query_counts), predicted$predicted.id,
                  predicted$prediction.score.max, 1 - predicted$prediction.score.max, scores)
jsonlite::write_json(list(tool = "seurat", variant = variant, version = as.character(packageVersion("Seurat")),
                          fit_predict_seconds = fit_predict_seconds),
                     file.path(out_dir, "run.json"), auto_unbox = TRUE)
cat(sprintf("seurat %s on %s: %.1f s\n", variant, pair_id, fit_predict_seconds))
