# Degenerate and unusual input: each gets a clear error naming the argument or value, or a
# documented, finite result; the session survives.

transfer_toy <- function(ref = toy_counts(80), query = toy_counts(60, depth = 2, seed = 2),
                         labels = toy_types(80), settings = tiny, ...) {
  TransferLabels(ref, query, ref.labels = labels, scenario = "rna_rna", settings = settings, threads = 1,
                 verbose = FALSE, ...)
}

test_that("threads above the cores are capped with a warning, and the session survives", {
  cores <- CellPredX:::max_threads_()
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(CellPredX)",
    "w <- NULL",
    "withCallingHandlers(CellPredX:::apply_threads(1000), warning = function(c) { w <<- conditionMessage(c); invokeRestart('muffleWarning') })",
    "cat(w, '\\n', CellPredXInfo()$threads, '\\n')",
    "options(cellpredx.threads = 512)",
    "withCallingHandlers(CellPredX:::apply_threads(NULL), warning = function(c) { w <<- conditionMessage(c); invokeRestart('muffleWarning') })",
    "cat(w, '\\n', CellPredXInfo()$threads, '\\n', 'alive', '\\n')"
  ), script)
  out <- paste(system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", script), stdout = TRUE, stderr = TRUE), collapse = "\n")
  out <- gsub("\\s+", " ", out)
  expect_match(out, sprintf("`threads` = 1000 is more than the %d core", cores), fixed = TRUE)
  expect_match(out, sprintf("`options(cellpredx.threads)` = 512 is more than the %d core", cores), fixed = TRUE)
  expect_match(out, sprintf(" %d alive", cores), fixed = TRUE)
  expect_error(CellPredX:::apply_threads(0), "`threads` must be a single whole number between 1 and 2,147,483,647, not 0.", fixed = TRUE)
})

test_that("an all-zero query is refused and cells without counts are Unknown with finite scores", {
  query <- toy_counts(60, depth = 2, seed = 2)
  empty <- Matrix::drop0(query * 0)
  err <- expect_error(transfer_toy(query = empty), class = "cellpredx_error_invalid_input")
  expect_match(gsub("\\s+", " ", conditionMessage(err)),
               "none of the 60 query cells has a value above zero in the 150 features it shares with the reference", fixed = TRUE)
  query[, c(2, 7)] <- 0
  query <- Matrix::drop0(query)
  res <- transfer_toy(query = query, unknown = "none")
  p <- res$predictions
  expect_identical(p$predicted.id[c(2, 7)], c("Unknown", "Unknown"))
  expect_true(all(p$predicted.id[-c(2, 7)] != "Unknown"))
  expect_true(all(is.finite(as.matrix(p[, c("prediction.score.max", "log.doubt", "prototype.similarity",
                                             "reference.distance", "novelty")]))))
  expect_equal(p$prediction.score.max[c(2, 7)], c(0.5, 0.5))
  expect_equal(p$log.doubt[c(2, 7)], rep(log(1 - 1 / 2), 2), tolerance = 1e-6)
  expect_equal(p$novelty[2], max(p$novelty[-c(2, 7)]), tolerance = 1e-6)
  # The model does the same for new cells.
  new <- predict(res$model, query[, 1:10], verbose = FALSE)
  expect_identical(new$predictions$predicted.id[c(2, 7)], c("Unknown", "Unknown"))
  expect_error(predict(res$model, empty, verbose = FALSE), "none of the 60 cells to annotate has a value above zero")
})

test_that("a query of one or two cells gets a clear error, and a model annotates a single cell", {
  query <- toy_counts(60, depth = 2, seed = 2)
  for (n in 1:2) {
    err <- expect_error(transfer_toy(query = query[, seq_len(n), drop = FALSE]), class = "cellpredx_error_invalid_input")
    expect_match(gsub("\\s+", " ", conditionMessage(err)), sprintf("the query has %d cell(s) with counts; a transfer needs at least 3", n), fixed = TRUE)
  }
  expect_s3_class(transfer_toy(query = query[, 1:3]), "CellPredXResult")
  res <- transfer_toy(query = query)
  one <- predict(res$model, query[, 1, drop = FALSE], verbose = FALSE)
  expect_identical(nrow(one$predictions), 1L)
  expect_true(is.finite(one$predictions$novelty))
  expect_error(PlotEmbedding(one), "needs at least 3 cells; `object` has 1", fixed = TRUE)
})

test_that("settings errors name the setting and the value; nested settings as the presets print them work", {
  expect_error(transfer_toy(settings = list(max_steps = "abc")), "setting `max_steps` must be a whole number of at least 0, not \"abc\"", fixed = TRUE)
  expect_error(transfer_toy(settings = list(max_steps = -5)), "setting `max_steps` must be a whole number of at least 0, not -5", fixed = TRUE)
  expect_error(transfer_toy(settings = list(max_steps = NA)), "setting `max_steps` must be a whole number of at least 0, not NA", fixed = TRUE)
  expect_error(transfer_toy(settings = list(max_steps = 10.5)), "setting `max_steps` must be a whole number of at least 0, not 10.5", fixed = TRUE)
  expect_error(transfer_toy(settings = list(learning_rate = "fast")), "setting `learning_rate` must be a number, not \"fast\"", fixed = TRUE)
  expect_error(transfer_toy(seed = 1e20), "`seed` must be a single whole number between 0 and 2,147,483,647, not 1e+20", fixed = TRUE)
  expect_error(transfer_toy(seed = 1.5), "`seed` must be a single whole number between 0 and 2,147,483,647, not 1.5", fixed = TRUE)
  ref <- toy_counts(80)
  nested <- TransferLabels(ref, toy_counts(60, depth = 2, seed = 2), ref.labels = toy_types(ncol(ref)), scenario = "rna_rna",
                           settings = list(training = list(max_steps = 7, batch_size = 32)), threads = 1, verbose = FALSE)
  expect_equal(nested$settings$training$max_steps, 7)
  expect_error(transfer_toy(settings = list(training = list(max_stepz = 7))), "unknown setting `max_stepz`", fixed = TRUE)
})

test_that("a reference type named Unknown is refused", {
  ref <- toy_counts(80)
  labels <- replace(toy_types(ncol(ref)), toy_types(ncol(ref)) == "B", "Unknown")
  expect_error(transfer_toy(labels = labels), "`ref.labels` has a type named \"Unknown\"", fixed = TRUE,
               class = "cellpredx_error_invalid_input")
})

test_that("features that match only when case is ignored are named in a warning", {
  ref <- toy_counts(80, genes = 300)
  rownames(ref) <- toupper(rownames(ref))
  query <- toy_counts(60, depth = 2, genes = 300, seed = 2)
  rownames(query) <- c(tolower(rownames(query)[1:70]), toupper(rownames(query)[71:300]))
  w <- expect_warning(res <- transfer_toy(ref = ref, query = query), class = "cellpredx_warning_feature_case")
  expect_match(gsub("\\s+", " ", conditionMessage(w)),
               "70 `query` features match `ref` features only when case is ignored (e.g. \"gene1\" and \"GENE1\")", fixed = TRUE)
  expect_length(res$features, 230)
})

test_that("a side of counts beside a side of other values is named in a warning", {
  query <- toy_counts(60, depth = 2, seed = 2)
  logged <- query
  logged@x <- log1p(logged@x)
  w <- expect_warning(transfer_toy(query = logged), class = "cellpredx_warning_normalization")
  expect_match(gsub("\\s+", " ", conditionMessage(w)), "`ref` holds counts (whole numbers) but `query` does not", fixed = TRUE)
  shifted <- query
  shifted@x <- shifted@x + 1e-4
  expect_warning(transfer_toy(query = shifted), class = "cellpredx_warning_normalization")
  # Told how to normalise, or both sides alike: no warning.
  expect_no_warning(transfer_toy(query = logged, settings = c(tiny, normalization = "log1p")))
  expect_no_warning(transfer_toy(query = query))
})

test_that("the same data with its genes in another order gives the same result", {
  ref <- toy_counts(80)
  query <- toy_counts(60, depth = 2, seed = 2)
  a <- transfer_toy(ref = ref, query = query)
  order <- rev(seq_len(nrow(ref)))
  b <- transfer_toy(ref = ref[order, ], query = query[sample(nrow(query)), ], labels = toy_types(ncol(ref)))
  expect_identical(a$probabilities, b$probabilities)
  expect_identical(a$features, sort(rownames(ref)))
})

test_that("SingleCellExperiment pairs find their scenario like Seurat objects", {
  ref <- toy_counts(80)
  sce <- function(x) SingleCellExperiment::SingleCellExperiment(list(counts = x))
  out <- TransferLabels(sce(ref), sce(toy_counts(60, depth = 2, seed = 2)), ref.labels = toy_types(ncol(ref)),
                        settings = tiny, threads = 1, verbose = FALSE)
  expect_identical(S4Vectors::metadata(out)$CellPredX$scenario, "rna_rna")
})

test_that("Seurat's score assay keeps every type, with the mapping from its row names", {
  ref <- toy_counts(80)
  labels <- ifelse(toy_types(ncol(ref)) == "T", "activated_stellate", "beta_cell")
  seurat <- function(x) suppressWarnings(SeuratObject::CreateSeuratObject(x))
  out <- expect_no_warning(TransferLabels(seurat(ref), seurat(toy_counts(60, depth = 2, seed = 2)), ref.labels = labels,
                                          scenario = "rna_rna", settings = tiny, threads = 1, verbose = FALSE))
  map <- SeuratObject::Misc(out, "CellPredX")$score.names
  expect_identical(unname(map[rownames(out[["prediction.scores.cellpredx"]])]), c("activated_stellate", "beta_cell"))
  expect_true(all(out$predicted.id %in% c(map, "Unknown")))
})

test_that("computing in a forked child is refused instead of hanging", {
  skip_on_os("windows")
  ref <- toy_counts(80)
  result <- parallel::mccollect(parallel::mcparallel(
    tryCatch(CellPredXInfo(), error = function(e) conditionMessage(e))
  ), wait = TRUE, timeout = 60)[[1]]
  expect_match(gsub("\\s+", " ", result), "cannot compute in a forked child process", fixed = TRUE)
  expect_s3_class(CellPredXInfo(), "cellpredx_info")
})
