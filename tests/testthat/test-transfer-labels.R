test_that("matrices in, a complete CellPredXResult out", {
  skip_without_data("pbmc3k_seurat")
  pair <- pbmc_pair()
  res <- TransferLabels(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                        settings = quick, threads = 2, verbose = FALSE)
  expect_s3_class(res, "CellPredXResult")
  expect_identical(rownames(res$predictions), colnames(pair$query))
  expect_setequal(rownames(res$probabilities), unique(pair$ref_meta$cell_type))
  expect_equal(unname(colSums(res$probabilities)), rep(1, ncol(pair$query)), tolerance = 1e-5)
  # RNA -> RNA on 2,000 genes: one network by default (an ensemble goes with smoothing).
  expect_equal(dim(res$embedding), c(ncol(pair$query), 64L))
  expect_equal(res$networks$seed, 0)
  expect_equal(res$history$network, rep(1L, 40))
  expect_equal(res$history$step, 1:40)
  # The default Unknown rule: novelty beyond the cut-off calibrated on this query, kept in the model.
  cutoff <- res$model$description$novelty_cutoff
  novelty <- res$predictions$novelty
  expect_equal(cutoff, median(novelty) + 3 * (median(novelty) - unname(quantile(novelty, 0.25))) / 0.6745, tolerance = 1e-5)
  expect_identical(res$predictions$predicted.id == "Unknown", novelty > cutoff)
  expect_identical(res$predictions$predicted.id[novelty <= cutoff], res$predictions$best.type[novelty <= cutoff])
  expect_identical(res$settings$unknown, "calibrated")
  expect_equal(res$settings$training$max_steps, 40)
  expect_identical(res$smoothing, 0)  # RNA -> RNA on 2,000 genes: not smoothed
  expect_equal(res$normalization, c("lognormalize", "lognormalize"))  # counts, named as on the command line
  # The automatic choices are recorded as made: a whole transcriptome gets a cosine query graph
  # and the rna_rna contrastive weight for unscaled data.
  expect_null(CellPredXPresets("rna_rna")$training$contrastive_weight)
  expect_equal(res$settings$training$contrastive_weight, 0.5)
  expect_equal(res$settings$preprocess$graph_metric, "cosine")
  expect_equal(res$settings$networks, 1)
  expect_equal(res$settings$prior_correction, 0)  # the query is not the reference's own cells
  expect_equal(summary(res$model)$training$contrastive_weight, 0.5)
  # FACS-sorted B cells are the easy part of this pair: most are found even after 40 steps.
  b <- pair$query_meta$cell_type == "B cells"
  expect_gt(mean(res$predictions$best.type[b] == "B"), 0.8)
  expect_output(print(res), "CellPredXResult")
})

test_that("the same seed gives the same labels; another seed another model", {
  skip_without_data("pbmc3k_seurat")
  pair <- pbmc_pair(300, 100)
  run <- function(seed) {
    TransferLabels(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                   settings = quick, seed = seed, threads = 2, verbose = FALSE)
  }
  a <- run(1)
  expect_identical(a$probabilities, run(1)$probabilities)
  expect_false(identical(a$probabilities, run(2)$probabilities))
  # An ensemble of two: seeds 1 and 2, embeddings side by side, histories one after another,
  # probabilities the mean of the single networks' of those seeds.
  joint <- TransferLabels(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                          settings = c(quick, networks = 2), seed = 1, threads = 2, verbose = FALSE)
  expect_equal(joint$networks$seed, 1:2)
  expect_equal(dim(joint$embedding), c(ncol(pair$query), 2 * 64L))
  expect_equal(joint$history$network, rep(1:2, each = 40))
  expect_equal(unname(joint$embedding[, 1:64]), unname(a$embedding), tolerance = 1e-6)
  expect_equal(joint$probabilities, (a$probabilities + run(2)$probabilities) / 2, tolerance = 1e-5)
  expect_output(print(joint), "2 networks of 40 steps")
  # A user's choice overrides the automatic one; CLR is there for antibody panels.
  chosen <- TransferLabels(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                           settings = c(quick, contrastive_weight = 0.2, graph_metric = "manhattan", normalization = "clr"),
                           seed = 1, threads = 2, verbose = FALSE)
  expect_equal(chosen$settings$training$contrastive_weight, 0.2)
  expect_equal(chosen$settings$preprocess$graph_metric, "manhattan")
  expect_equal(chosen$normalization, c("clr", "clr"))
  expect_false(isTRUE(all.equal(chosen$probabilities, a$probabilities)))
  # A full prior correction turns the class-balanced prior (class_balance 0.5: cells drawn with
  # weight n^-0.5) back into the reference's composition: p ~ p_balanced * n^0.5.
  corrected <- TransferLabels(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                              settings = c(quick, prior_correction = 1), seed = 1, threads = 2, verbose = FALSE)
  cells <- as.vector(table(pair$ref_meta$cell_type)[rownames(a$probabilities)])
  expected <- a$probabilities * sqrt(cells)
  expected <- sweep(expected, 2, colSums(expected), "/")
  expect_equal(corrected$probabilities, expected, tolerance = 1e-4)
  expect_equal(corrected$settings$prior_correction, 1)
})

test_that("the three Unknown rules label as documented, and a model keeps its rule and cut-off", {
  skip_without_data("pbmc3k_seurat")
  pair <- pbmc_pair(300, 120)
  go <- function(..., settings = quick) {
    TransferLabels(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                   settings = settings, threads = 2, verbose = FALSE, ...)
  }
  by_threshold <- go(unknown = "threshold", threshold = 0.9)
  p <- by_threshold$predictions
  expect_identical(p$predicted.id == "Unknown", p$prediction.score.max < 0.9)
  none <- go(unknown = "none")
  expect_identical(none$predictions$predicted.id, none$predictions$best.type)
  calibrated <- go()
  path <- tempfile("model")
  SaveCellPredX(calibrated$model, path)
  loaded <- LoadCellPredX(path)
  expect_identical(loaded$description$unknown, "calibrated")
  expect_identical(loaded$description$novelty_cutoff, calibrated$model$description$novelty_cutoff)
  again <- predict(loaded, pair$query, verbose = FALSE)
  expect_identical(again$predictions$predicted.id == "Unknown", again$predictions$novelty > loaded$description$novelty_cutoff)
  switched <- predict(loaded, pair$query, unknown = "threshold", threshold = 0.5, verbose = FALSE)
  expect_identical(switched$predictions$predicted.id == "Unknown", switched$predictions$prediction.score.max < 0.5)
  expect_output(print(loaded), "Unknown: calibrated: novelty above")
  expect_error(go(unknown = "sometimes"), "`unknown` must be one of", class = "rlang_error")
  expect_error(go(unknown = "threshold", threshold = 2), "`threshold` must be one number between 0 and 1")
  expect_error(go(settings = c(quick, unknown_scale = -1)), "unknown_scale must be a number above 0, not -1")
  expect_error(predict(loaded, pair$query, threshold = NA, verbose = FALSE), "`threshold` must be one number between 0 and 1")
})

test_that("max_epochs stops a small dataset's training early and the settings say so", {
  skip_without_data("pbmc3k_seurat")
  pair <- pbmc_pair(300, 100)
  # 300 reference cells, 128 a step: two passes are 4.7 steps, so 5 of the 40 run.
  res <- TransferLabels(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                        settings = c(quick, max_epochs = 2), threads = 2, verbose = FALSE)
  expect_equal(nrow(res$history), 5)
  expect_equal(res$settings$training$max_steps, 5)
  expect_equal(res$settings$training$max_epochs, 2)
  expect_equal(CellPredXPresets("rna_rna")$training$max_epochs, 350)
})

test_that("Seurat objects get the documented columns, assay, reduction and record", {
  skip_without_data("pbmc3k_seurat")
  skip_if_not_installed("Seurat")
  pair <- pbmc_pair(300, 100)
  objects <- seurat_pair(pair)
  ref <- objects$ref
  query <- objects$query
  out <- suppressWarnings(TransferLabels(ref, query, ref.labels = "type", scenario = "rna_rna", settings = quick, threads = 2, verbose = FALSE))
  expect_true(all(c("predicted.id", "predicted.best.type", "prediction.score.max", "predicted.novelty") %in% names(out[[]])))
  called <- out$predicted.novelty <= SeuratObject::Misc(out, "CellPredX")$model$description$novelty_cutoff
  expect_identical(out$predicted.id[called], out$predicted.best.type[called])
  expect_true(all(out$predicted.id[!called] == "Unknown"))
  expect_true("prediction.scores.cellpredx" %in% SeuratObject::Assays(out))
  expect_equal(dim(SeuratObject::Embeddings(out, "cellpredx")), c(100L, 64L))
  record <- SeuratObject::Misc(out, "CellPredX")
  expect_equal(nrow(record$history), 40)
  expect_equal(nrow(record$networks), 1)
  expect_identical(record$scenario, "rna_rna")
  # A subset of the annotated cells is evaluated and plotted from its own metadata.
  keep <- rev(seq_len(ncol(out)))[1:60]
  part <- out[, keep]
  scored <- EvaluateLabels(part, pair$query_meta$cell_type[keep], map = c("B" = "B cells"))
  expect_identical(scored$scored_cells + scored$novel_cells, 60L)
  expect_identical(PlotEmbedding(part, color.by = "best.type")$data$value, unname(out$predicted.best.type[keep]))

  SeuratObject::Idents(ref) <- "type"
  by_idents <- suppressWarnings(TransferLabels(ref, query, scenario = "rna_rna", settings = quick, threads = 2, verbose = FALSE, prefix = "cellpredx"))
  expect_true("cellpredx.id" %in% names(by_idents[[]]))

  before <- query
  expect_error(TransferLabels(ref, query, ref.labels = "celltype", verbose = FALSE), "no metadata column")
  expect_error(TransferLabels(ref, query, ref.labels = "type", query.assay = "ATAC", verbose = FALSE),
               "has no assay \"ATAC\".*assays are \"RNA\"", class = "cellpredx_error")
  logged <- query
  logged[["LOG"]] <- suppressWarnings(SeuratObject::CreateAssayObject(data = log1p(pair$query)))
  expect_error(TransferLabels(ref, logged, ref.labels = "type", query.assay = "LOG", verbose = FALSE),
               "\"counts\" layer of assay \"LOG\".*empty", class = "cellpredx_error")
  expect_identical(query, before)
})

test_that("SingleCellExperiment objects get colData, reducedDim and metadata", {
  skip_without_data("pbmc3k_seurat")
  skip_if_not_installed("SingleCellExperiment")
  pair <- pbmc_pair(300, 100)
  ref <- SingleCellExperiment::SingleCellExperiment(list(counts = pair$ref), colData = data.frame(type = pair$ref_meta$cell_type))
  query <- SingleCellExperiment::SingleCellExperiment(list(counts = pair$query))
  out <- TransferLabels(ref, query, ref.labels = "type", scenario = "rna_rna", settings = quick, threads = 2, verbose = FALSE)
  expect_true(all(c("predicted.id", "predicted.best.type", "prediction.score.max", "predicted.novelty") %in%
                    names(SummarizedExperiment::colData(out))))
  expect_equal(dim(SingleCellExperiment::reducedDim(out, "CellPredX")), c(100L, 64L))
  expect_equal(dim(S4Vectors::metadata(out)$CellPredX$probabilities), c(length(unique(pair$ref_meta$cell_type)), 100L))
})

test_that("bad input gets a clear error naming the argument", {
  skip_without_data("pbmc3k_seurat")
  pair <- pbmc_pair(200, 60)
  labels <- pair$ref_meta$cell_type
  go <- function(ref = pair$ref, query = pair$query, ref.labels = labels, ...) {
    TransferLabels(ref, query, ref.labels = ref.labels, verbose = FALSE, threads = 2, ...)
  }
  rna <- function(...) go(scenario = "rna_rna", settings = quick, ...)
  expect_error(rna(ref.labels = replace(labels, 5, NA)), "missing or empty label.*cell 5")
  expect_error(rna(ref.labels = rep("T", ncol(pair$ref))), "single cell type")
  expect_error(rna(ref.labels = labels[-1]), "199 labels for 200 reference cells")
  expect_warning(rna(ref.labels = replace(labels, 1, "lonely")), "single cell")
  renamed <- pair$query
  rownames(renamed) <- paste0("ENSG", seq_len(nrow(renamed)))
  expect_error(rna(query = renamed), "features are shared")
  dup <- pair$query
  rownames(dup)[2] <- rownames(dup)[1]
  expect_error(rna(query = dup), "duplicated features names")
  expect_error(rna(query = pair$query[, 0]), "no cells")
  negative <- pair$query
  negative[1, 1] <- -2
  expect_error(rna(query = negative), "1 negative values in the query.*not scaled")
  with_na <- as.matrix(pair$ref)
  with_na[2, 3] <- NA
  expect_error(rna(ref = with_na), "1 missing or infinite values in the reference")
  dup_cells <- pair$query
  colnames(dup_cells)[3] <- colnames(dup_cells)[1]
  expect_error(rna(query = dup_cells), "duplicated cells names")
  expect_error(rna(threshold = 1.5), "between 0 and 1")
  expect_error(go(scenario = "rna"), "must be")
  expect_error(go(), "cannot tell")
  expect_error(go(scenario = "rna_rna", settings = list(max_stepz = 10)), "unknown setting `max_stepz`")
  expect_error(go(scenario = "rna_rna", settings = list(max_steps = "many")), "setting `max_steps` must be a whole number of at least 0, not \"many\"", fixed = TRUE)
  expect_error(go(scenario = "rna_rna", settings = list(smoothing = 1)), "smoothing must be at least 0 and below 1")
  expect_error(go(scenario = "rna_rna", settings = list(networks = 0)), "networks must be 1 to 20, not 0")
  expect_error(go(scenario = "rna_rna", settings = list(normalization = "clr2")), "setting `normalization` must be one of its named choices", fixed = TRUE)
  expect_error(go(scenario = "rna_rna", settings = c(quick, contrastive_weight = -1)), "contrastive_weight must be a finite number >= 0")
  expect_error(go(scenario = "rna_rna", settings = c(quick, prior_correction = 1.5)), "prior_correction must be between 0 and 1, not 1.5")
  expect_error(go(scenario = "rna_rna", settings = c(quick, max_epochs = 0)), "max_epochs must be a number > 0, not 0")
  expect_error(go(ref = "counts", scenario = "rna_rna"), "dgCMatrix")
  if (!CellPredXInfo()$cuda_available) {
    expect_error(rna(device = "cuda"), "sees no CUDA device")
  }
})

test_that("presets list every setting", {
  preset <- CellPredXPresets("atac_atac")
  expect_equal(preset$training$max_steps, 1000)
  expect_equal(preset$preprocess$graph_reduction, "lsi")
  expect_null(preset$smoothing)
  expect_null(preset$prior_correction)
  expect_error(CellPredXPresets("peaks"), "must be one of")
})

test_that("a Signac-style query (active assay peaks) is read through its gene-activity assay", {
  skip_if_not_installed("Seurat")
  example <- readRDS(system.file("extdata", "snareseq_subset.rds", package = "CellPredX"))
  ref <- SeuratObject::CreateSeuratObject(example$ref_rna, meta.data = example$ref_meta)
  peaks <- example$query_peaks
  rownames(peaks) <- gsub("_", "-", rownames(peaks))
  query <- SeuratObject::CreateSeuratObject(peaks, assay = "peaks")
  expect_error(TransferLabels(ref, query, ref.labels = "cell_type", verbose = FALSE),
               "holds peaks.*GeneActivity", class = "cellpredx_error")
  query[["GeneActivity"]] <- SeuratObject::CreateAssayObject(counts = example$query_activity)
  expect_message(out <- TransferLabels(ref, query, ref.labels = "cell_type", settings = quick, threads = 2),
                 "gene-activity assay")
  record <- SeuratObject::Misc(out, "CellPredX")
  expect_identical(record$query$assay, "GeneActivity")
  expect_identical(record$scenario, "rna_atac_unmatched")
  expect_identical(SeuratObject::DefaultAssay(out), "peaks")
})
