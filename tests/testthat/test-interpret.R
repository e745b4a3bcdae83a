pbmc_transfer <- function(...) {
  pair <- pbmc_pair(400, 150)
  res <- TransferLabels(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                        settings = list(max_steps = 150, batch_size = 128), threads = 2, verbose = FALSE, ...)
  list(pair = pair, res = res)
}

test_that("interpret = TRUE returns per-type and per-cell determinant genes that add up", {
  skip_without_data("pbmc3k_seurat")
  run <- pbmc_transfer(interpret = TRUE)
  d <- run$res$determinants
  expect_s3_class(d, "CellPredXDeterminants")
  expect_named(d, c("cell_type", "ranking", "rank", "gene", "frequency", "mean_attribution", "cells"))
  expect_setequal(unique(d$ranking), c("frequency", "mean_attribution"))
  expect_true(all(d$gene %in% run$res$features))
  expect_true(all(tapply(d$rank, paste(d$cell_type, d$ranking), max) <= 50))
  expect_true(all(d$frequency >= 0 & d$frequency <= 1))
  # Each type's frequency ranking is ordered by frequency; mean attribution by mean attribution.
  for (key in unique(paste(d$cell_type, d$ranking))) {
    part <- d[paste(d$cell_type, d$ranking) == key, ]
    sorted_by <- if (part$ranking[1] == "frequency") part$frequency else part$mean_attribution
    expect_false(is.unsorted(rev(sorted_by)), label = key)
  }
  # Completeness: the attributions of a cell add up to its change in probability (within 1 %).
  completeness <- attr(d, "completeness")
  expect_identical(completeness$cell, colnames(run$pair$query))
  moved <- abs(completeness$prediction_change) > 0.01
  expect_gt(sum(moved), 100)
  gap <- abs(completeness$attribution_sum - completeness$prediction_change)[moved] / abs(completeness$prediction_change[moved])
  expect_lt(max(gap), 0.01)
  # The explained type is the most probable one.
  expect_identical(completeness$cell_type, run$res$predictions$best.type)
  cells <- attr(d, "cells")
  expect_true(all(cells$rank <= 100))
  first <- cells[cells$rank == 1, ]
  expect_true(all(abs(first$attribution) >= tapply(abs(cells$attribution), cells$cell, max)[first$cell] - 1e-7))
  # FACS-sorted B cells: B cell markers drive their prediction.
  b_genes <- d$gene[d$cell_type == "B" & d$ranking == "mean_attribution" & d$rank <= 20]
  expect_true(any(c("CD79A", "MS4A1", "CD79B") %in% b_genes))
})

test_that("DeterminantGenes on the model equals the transfer's; other targets and settings work", {
  skip_without_data("pbmc3k_seurat")
  run <- pbmc_transfer(interpret = TRUE)
  again <- DeterminantGenes(run$res, run$pair$query, verbose = FALSE)
  expect_equal(as.data.frame(again), as.data.frame(run$res$determinants))
  textbook <- DeterminantGenes(run$res$model, run$pair$query, path.space = "input", cells.per.pass = 17, verbose = FALSE)
  expect_equal(as.data.frame(textbook), as.data.frame(run$res$determinants), tolerance = 1e-3)
  b <- DeterminantGenes(run$res$model, run$pair$query, target = "B", n = 10, top = 20, steps = 20, verbose = FALSE)
  expect_true(all(attr(b, "completeness")$cell_type == "B"))
  expect_true(all(attr(b, "cells")$rank <= 20))
  expect_true(all(b$rank <= 10))
  expect_output(print(b), "CellPredXDeterminants")
})

test_that("KeyGeneHitRate counts the known markers among the determinant genes", {
  skip_without_data("pbmc3k_seurat")
  run <- pbmc_transfer(interpret = TRUE)
  d <- run$res$determinants
  b <- d[d$cell_type == "B" & d$ranking == "frequency", ]
  outside <- setdiff(run$res$features, b$gene)[1]
  markers <- list(B = c(b$gene[1], b$gene[2], outside, "NOT-A-GENE"), Nonexistent = "CD3E")
  hits <- KeyGeneHitRate(d, markers)
  expect_identical(hits$cell_type, "B")
  expect_identical(c(hits$markers, hits$in_features, hits$found), c(4L, 3L, 2L))
  expect_equal(hits$hit_rate, 2 / 3)
  top1 <- KeyGeneHitRate(d, data.frame(cell_type = "B", gene = c(b$gene[1], b$gene[2])), n = 1)
  expect_equal(top1$hit_rate, 0.5)
  expect_error(KeyGeneHitRate(d, list(X = "CD3E")), "None of the marker types", class = "cellpredx_error")
  expect_error(KeyGeneHitRate(d, "CD3E"), "markers", class = "cellpredx_error")
  expect_error(KeyGeneHitRate(as.data.frame(d), markers), "DeterminantGenes", class = "cellpredx_error")
})

test_that("Seurat and SingleCellExperiment queries keep determinant genes where documented", {
  skip_without_data("pbmc3k_seurat")
  skip_if_not_installed("Seurat")
  pair <- pbmc_pair(300, 100)
  objects <- seurat_pair(pair)
  ref <- objects$ref
  query <- objects$query
  out <- suppressWarnings(TransferLabels(ref, query, ref.labels = "type", scenario = "rna_rna", settings = quick,
                                         threads = 2, verbose = FALSE, interpret = TRUE))
  record <- SeuratObject::Misc(out, "CellPredX")
  expect_s3_class(record$determinants, "CellPredXDeterminants")
  top <- out[[]]$predicted.determinants
  expect_length(top, ncol(query))
  cells <- attr(record$determinants, "cells")
  first_cell <- cells[cells$cell == colnames(query)[1] & cells$rank <= 10, ]
  expect_identical(top[1], paste(first_cell$gene, collapse = ", "))
  expect_equal(as.data.frame(DeterminantGenes(out, verbose = FALSE)), as.data.frame(record$determinants))
  expect_error(DeterminantGenes(query), "no CellPredX model", class = "cellpredx_error")

  skip_if_not_installed("SingleCellExperiment")
  sce_ref <- SingleCellExperiment::SingleCellExperiment(list(counts = pair$ref), colData = data.frame(type = pair$ref_meta$cell_type))
  sce_query <- SingleCellExperiment::SingleCellExperiment(list(counts = pair$query))
  sce <- TransferLabels(sce_ref, sce_query, ref.labels = "type", scenario = "rna_rna", settings = quick, threads = 2,
                        verbose = FALSE, interpret = TRUE)
  expect_length(SummarizedExperiment::colData(sce)$predicted.determinants, ncol(sce_query))
  expect_equal(as.data.frame(DeterminantGenes(sce, verbose = FALSE)),
               as.data.frame(S4Vectors::metadata(sce)$CellPredX$determinants))
})

test_that("bad interpretation settings get a clear error naming the argument", {
  skip_without_data("pbmc3k_seurat")
  run <- pbmc_transfer()
  model <- run$res$model
  query <- run$pair$query
  expect_error(DeterminantGenes(model), "newdata", class = "cellpredx_error")
  expect_error(DeterminantGenes(model, query, target = "Neuron"), "target.*one of the model's types", class = "cellpredx_error")
  expect_error(DeterminantGenes(model, query, baseline = 1:3), "baseline.*one per model feature", class = "cellpredx_error")
  expect_error(DeterminantGenes(model, query, n = 0), "n", class = "cellpredx_error")
  expect_error(DeterminantGenes(model, query, steps = 1.5), "steps", class = "cellpredx_error")
  expect_error(DeterminantGenes(model, query, cells.per.pass = 0), "cells.per.pass", class = "cellpredx_error")
  expect_error(DeterminantGenes(model, query[1:50, ]), "only .* of the model's .* features", class = "cellpredx_error")
  expect_error(DeterminantGenes(model, query, path.space = "latent"), "path.space")
})

test_that("the plots build on real output", {
  skip_without_data("pbmc3k_seurat")
  run <- pbmc_transfer(interpret = TRUE)
  truth <- run$pair$query_meta$cell_type
  plots <- list(PlotEmbedding(run$res), PlotEmbedding(run$res, color.by = "confidence"), PlotEmbedding(run$res, color.by = "best.type"),
                PlotEmbedding(run$res, color.by = "novelty"), PlotConfidence(run$res),
                PlotConfusion(run$res, truth), PlotDeterminants(run$res$determinants, n = 3),
                PlotDeterminants(run$res$determinants, ranking = "mean_attribution", types = "B"))
  for (p in plots) {
    expect_s3_class(p, "ggplot")
    expect_no_error(ggplot2::ggplot_build(p))
  }
  expect_identical(plots[[3]]$data$value, run$res$predictions$best.type)
  expect_identical(plots[[4]]$data$value, run$res$predictions$novelty)
  built <- ggplot2::ggplot_build(PlotConfusion(run$res, truth, label = "predicted.id"))
  # One tile per (true, predicted) pair.
  expect_equal(nrow(built$data[[1]]), length(unique(truth)) * length(unique(run$res$predictions$predicted.id)))
  # The titles give the figures EvaluateLabels() prints for the same object.
  expect_match(PlotConfusion(run$res, truth)$labels$title, "nothing scored", fixed = TRUE)
  map <- c("B" = "B cells", "Naive CD4 T" = "CD4 T cells", "Memory CD4 T" = "CD4 T cells", "CD8 T" = "CD8 T cells")
  scores <- EvaluateLabels(run$res, truth, map = map)
  expect_identical(PlotConfusion(run$res, truth, map = map)$labels$title,
                   sprintf("Most probable type: accuracy %.3f on %d cells of shared types", scores$accuracy, scores$scored_cells))
  expect_match(PlotConfusion(run$res, truth, label = "predicted.id", map = map)$labels$title,
               sprintf("Labels: accuracy %.3f on %d cells of shared types, %.1f%% of them Unknown",
                       scores$label_accuracy, scores$scored_cells, 100 * scores$unknown_shared), fixed = TRUE)
  shared <- truth %in% map
  labels <- ifelse(run$res$predictions$predicted.id %in% names(map), map[run$res$predictions$predicted.id],
                   run$res$predictions$predicted.id)
  expect_equal(scores$label_accuracy, mean(labels[shared] == truth[shared]))
  expect_output(print(scores), "labels (predicted.id): accuracy", fixed = TRUE)
  # The UMAP leaves the session's random state as it was.
  set.seed(3)
  state <- .Random.seed
  PlotEmbedding(run$res)
  expect_identical(.Random.seed, state)
  expect_error(PlotConfusion(run$res, truth[-1]), "truth", class = "cellpredx_error")
  expect_error(PlotDeterminants(run$res$determinants, types = "Neuron"), "No determinant genes", class = "cellpredx_error")
  expect_error(PlotEmbedding(list()), "object", class = "cellpredx_error")
})
