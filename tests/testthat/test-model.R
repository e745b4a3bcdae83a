test_that("a trained model predicts new cells, and identically after save and load", {
  skip_without_data("pbmc3k_seurat")
  pair <- pbmc_pair(300, 120)
  first <- pair$query[, 1:60]
  later <- pair$query[, 61:120]
  model <- TrainCellPredX(pair$ref, first, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                          settings = quick, threads = 2, verbose = FALSE)
  expect_s3_class(model, "CellPredXModel")
  expect_output(print(model), "rna_rna")
  # RNA -> RNA on 2,000 genes: one network by default.
  expect_equal(summary(model)$networks$steps, 40)
  expect_equal(summary(model)$reference_cells, c(table(pair$ref_meta$cell_type))[model$description$classes])
  expect_equal(summary(model)$prior_correction, 0)
  expect_equal(nrow(model$history), 40)
  expect_output(print(model), "1 network of 40 steps")

  shuffled <- later[rev(seq_len(nrow(later))), ]
  a <- predict(model, later, verbose = FALSE)
  b <- predict(model, shuffled, verbose = FALSE)
  expect_equal(a$probabilities, b$probabilities, tolerance = 1e-6)
  expect_identical(rownames(a$predictions), colnames(later))

  path <- file.path(tempdir(), "cellpredx-model-test")
  on.exit(unlink(path, recursive = TRUE), add = TRUE)
  SaveCellPredX(model, path)
  expect_true(all(file.exists(file.path(path, c("model.json", "model.safetensors")))))
  loaded <- LoadCellPredX(path, device = "cpu")
  expect_identical(loaded$description$features, model$description$features)
  expect_identical(predict(loaded, later, verbose = FALSE)$probabilities, a$probabilities)
})

test_that("broken or stale models give one clear error", {
  skip_without_data("pbmc3k_seurat")
  pair <- pbmc_pair(200, 60)
  model <- TrainCellPredX(pair$ref, pair$query, ref.labels = pair$ref_meta$cell_type, scenario = "rna_rna",
                          settings = quick, threads = 2, verbose = FALSE)
  expect_error(LoadCellPredX(file.path(tempdir(), "no-such-model")), "cannot read the model description")
  path <- file.path(tempdir(), "cellpredx-broken-model")
  on.exit(unlink(path, recursive = TRUE), add = TRUE)
  SaveCellPredX(model, path)
  weights <- file.path(path, "model.safetensors")
  bytes <- readBin(weights, "raw", file.size(weights))
  writeBin(bytes[seq_len(length(bytes) %/% 2)], weights)
  expect_error(LoadCellPredX(path), "truncated")

  rds <- tempfile(fileext = ".rds")
  saveRDS(model, rds)
  expect_error(predict(readRDS(rds), pair$query, verbose = FALSE), "SaveCellPredX")
  renamed <- pair$query
  rownames(renamed) <- paste0("x", seq_len(nrow(renamed)))
  expect_error(predict(model, renamed, verbose = FALSE), "only 0 of the model's")
  negative <- pair$query
  negative[2, 2] <- -1
  expect_error(predict(model, negative, verbose = FALSE), "1 negative values in the cells to annotate")
  expect_error(SaveCellPredX(list(), path), "CellPredXModel")
})
