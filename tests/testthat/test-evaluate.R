test_that("EvaluateLabels scores shared types, collapses with a map and scores novel types", {
  skip_without_data("pbmc3k_seurat")
  pair <- pbmc_pair(300, 120)
  res <- TransferLabels(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                        settings = quick, threads = 2, verbose = FALSE)
  map <- c("Naive CD4 T" = "CD4 T cells", "Memory CD4 T" = "CD4 T cells", "CD8 T" = "CD8 T cells", B = "B cells")
  truth <- pair$query_meta$cell_type
  e <- EvaluateLabels(res, truth, map = map)
  best <- ifelse(res$predictions$best.type %in% names(map), map[res$predictions$best.type], res$predictions$best.type)
  expect_equal(e$accuracy, mean(best == truth))
  expect_equal(e$scored_cells, length(truth))
  for (type in e$per_type$cell_type) {
    row <- e$per_type[e$per_type$cell_type == type, ]
    expect_equal(row$recall, mean(best[truth == type] == type), label = type)
    expect_equal(row$precision, if (any(best == type)) mean(truth[best == type] == type) else 0, label = type)
  }
  expect_true(is.na(e$auroc))
  expect_output(print(e), "accuracy")

  # Call the CD8 T cells a type the reference lacks: they become novel cells, scored by AUROC.
  open <- ifelse(truth == "CD8 T cells", "Novel", truth)
  o <- EvaluateLabels(res, open, map = map)
  expect_equal(o$novel_cells, sum(open == "Novel"))
  doubt <- res$predictions$novelty
  # The score is the reference distance smoothed over neighbours: same scale, not the same values.
  expect_true(all(doubt > 0) && cor(doubt, res$predictions$reference.distance) > 0.3)
  expect_true(min(doubt) >= min(res$predictions$reference.distance) && max(doubt) <= max(res$predictions$reference.distance))
  novel <- open == "Novel"
  by_rank <- rank(doubt)
  manual_auroc <- (sum(by_rank[novel]) - sum(novel) * (sum(novel) + 1) / 2) / (sum(novel) * sum(!novel))
  expect_equal(o$auroc, manual_auroc, tolerance = 1e-9)
  expect_true(o$oscr >= 0 && o$oscr <= 1)

  expect_error(EvaluateLabels(res, truth[-1]), "truth", class = "cellpredx_error")
  expect_error(EvaluateLabels(res, "cell_type"), "`truth`: the object has no metadata column", class = "cellpredx_error")
  expect_error(EvaluateLabels(res, truth, map = c("a", "b")), "map", class = "cellpredx_error")
  expect_error(EvaluateLabels(res, rep("Martian", length(truth))), "nothing to score", class = "cellpredx_error")
  expect_error(EvaluateLabels(list(), truth), "object", class = "cellpredx_error")
})
