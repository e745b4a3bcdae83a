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

# A copy of the saved model in `dir` with its description changed by `edit` (a function of the
# description as a list).
edited_model <- function(saved, edit) {
  dir <- tempfile("edited-model")
  dir.create(dir)
  file.copy(file.path(saved, "model.safetensors"), dir)
  description <- edit(jsonlite::read_json(file.path(saved, "model.json")))
  jsonlite::write_json(description, file.path(dir, "model.json"), auto_unbox = TRUE, digits = NA, null = "null")
  dir
}

hostile_model_edits <- list(
  `shape.embedding_dim` = function(d) { d$shape$embedding_dim <- 1e9; d$training$embedding_dim <- 1e9; d },
  `shape.context_dim` = function(d) { d$shape$context_dim <- 1e9; d },
  `shape.reference_cells` = function(d) { d$shape$reference_cells <- 1e7; d },
  `shape.input_dim` = function(d) { d$shape$input_dim <- 1e12; d },
  `shape.n_classes` = function(d) { d$shape$n_classes <- -4; d },
  negative_context = function(d) { d$shape$context_dim <- -3; d },
  `threshold` = function(d) { d$threshold <- 5; d },
  `smoothing` = function(d) { d$smoothing <- 7; d },
  `class_cells` = function(d) { d$class_cells <- d$class_cells[-1]; d },
  networks = function(d) { d$networks <- rep(d$networks, 50); d },
  mismatched_context = function(d) { d$shape$context_dim <- 32; d }
)

test_that("a model file's sizes and values are checked before anything is allocated", {
  set.seed(5)
  type <- rep(c("T", "B"), each = 60)
  simulate <- function(depth) {
    rate <- outer(rep(c(2, 0.2), each = 75), type == "T", function(a, t) ifelse(t, a, 2.2 - a))
    Matrix::Matrix(matrix(rpois(length(rate), depth * rate), 150, dimnames = list(paste0("g", 1:150), paste0("c", 1:120))),
                   sparse = TRUE)
  }
  model <- TrainCellPredX(simulate(1), simulate(2), ref.labels = type, scenario = "rna_rna",
                          settings = list(max_steps = 5, batch_size = 32), threads = 1, verbose = FALSE)
  saved <- file.path(tempdir(), "model-to-edit")
  SaveCellPredX(model, saved, overwrite = TRUE)
  dirs <- vapply(hostile_model_edits, function(edit) edited_model(saved, edit), character(1))
  expected <- c(`shape.embedding_dim` = "shape.embedding_dim is 1000000000; a CellPredX model has 2 to 4096",
                `shape.context_dim` = "shape.context_dim is 1000000000",
                `shape.reference_cells` = "shape.reference_cells is 10000000, and the reference had 120 cells",
                `shape.input_dim` = "shape.input_dim is 1000000000000, and the model lists 150 features",
                `shape.n_classes` = "shape.n_classes is -4, and the model lists 2 classes",
                negative_context = "shape.context_dim is -3",
                threshold = "threshold must be between 0 and 1, not 5",
                smoothing = "smoothing must be at least 0 and below 1, not 7",
                class_cells = "class_cells has 1 counts for 2 classes",
                networks = "networks must be 1 to 20, not 150",
                mismatched_context = "not the weights of this model: network1.attention.")
  for (name in names(dirs)) {
    err <- expect_error(LoadCellPredX(dirs[[name]]), class = "cellpredx_error_invalid_input")
    expect_match(gsub("\\s+", " ", conditionMessage(err)), expected[[name]], fixed = TRUE, info = name)
  }

  # The same loads in a fresh process: its peak memory stays near where it started.
  skip_if_no_proc_memory()
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(CellPredX)",
    "hwm <- function() as.numeric(sub('[^0-9]*([0-9]+).*', '\\\\1', grep('^VmHWM:', readLines('/proc/self/status'), value = TRUE)))",
    "invisible(gc()); writeLines('5', '/proc/self/clear_refs'); before <- hwm()",
    sprintf("for (d in c(%s)) try(LoadCellPredX(d), silent = TRUE)", paste(shQuote(dirs), collapse = ", ")),
    "cat((hwm() - before) / 1024)"
  ), script)
  out <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script), stdout = TRUE, stderr = TRUE)
  grown_mb <- as.numeric(utils::tail(out, 1))
  expect_false(is.na(grown_mb), info = paste(out, collapse = "\n"))
  expect_lt(grown_mb, 100)
})

test_that("SaveCellPredX refuses an empty path and keeps a saved model unless told to replace it", {
  set.seed(6)
  ref <- Matrix::Matrix(matrix(rpois(150 * 40, 1), 150, dimnames = list(paste0("g", 1:150), paste0("c", 1:40))), sparse = TRUE)
  model <- TrainCellPredX(ref, ref, ref.labels = rep(c("a", "b"), 20), scenario = "rna_rna",
                          settings = list(max_steps = 3, batch_size = 16), threads = 1, verbose = FALSE)
  old <- setwd(tempdir())
  on.exit(setwd(old), add = TRUE)
  expect_error(SaveCellPredX(model, ""), "`path` must be one non-empty directory path, not \"\"", class = "cellpredx_error")
  expect_false(file.exists("model.json"))
  path <- tempfile("saved")
  SaveCellPredX(model, path)
  before <- file.mtime(file.path(path, "model.json"))
  err <- expect_error(SaveCellPredX(model, path), class = "cellpredx_error_invalid_input")
  expect_match(gsub("\\s+", " ", conditionMessage(err)), "already holds a model (model.safetensors, model.json); choose another directory, or replace it (R: overwrite = TRUE", fixed = TRUE)
  expect_identical(file.mtime(file.path(path, "model.json")), before)
  expect_identical(SaveCellPredX(model, path, overwrite = TRUE), path)
  file <- tempfile()
  writeLines("x", file)
  expect_error(SaveCellPredX(model, file), "is a file, not a directory")
})
