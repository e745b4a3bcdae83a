test_that("CellPredXInfo reports the linked libtorch and the thread count", {
  info <- CellPredXInfo()
  expect_s3_class(info, "cellpredx_info")
  expect_match(info$libtorch_version, "^2\\.11\\.0")
  expect_identical(info$package_version, as.character(utils::packageVersion("CellPredX")))
  expect_type(info$cuda_available, "logical")
  expect_identical(info$cuda_available, info$cuda_device_count > 0L)
  text <- format(info)
  expect_match(text[1], "^CellPredX ")
  expect_true(any(grepl("^libtorch:  2\\.11\\.0", text)))
  expect_true(any(grepl("^CUDA:      (yes|no)", text)))
  expect_output(print(info), "threads:")
})

test_that("the thread setting reaches the core", {
  old <- CellPredXInfo()$threads
  on.exit(CellPredX:::apply_threads(old))
  CellPredX:::apply_threads(1)
  expect_identical(CellPredXInfo()$threads, 1L)
  withr_opt <- options(cellpredx.threads = 2)
  on.exit(options(withr_opt), add = TRUE)
  CellPredX:::apply_threads(NULL)
  expect_identical(CellPredXInfo()$threads, 2L)
})

test_that("device 'auto' and 'cpu' resolve", {
  expect_identical(CellPredX:::resolve_device("cpu"), "cpu")
  expected <- if (CellPredXInfo()$cuda_available) "cuda:0" else "cpu"
  expect_identical(CellPredX:::resolve_device("auto"), expected)
})

test_that("the package loads in a fresh R process with no environment variables", {
  r <- file.path(R.home("bin"), "R")
  out <- system2("env", c("-i", paste0("HOME=", Sys.getenv("HOME")), r, "--vanilla", "-q", "-s", "-e",
                          shQuote("library(CellPredX); cat(CellPredXInfo()$libtorch_version)")),
                 stdout = TRUE, stderr = TRUE)
  expect_match(paste(out, collapse = "\n"), "2\\.11\\.0")
})

test_that("libtorch is loaded by the loader library before CellPredX's own", {
  dlls <- names(getLoadedDLLs())
  expect_true(all(c("cellpredx_torch_loader", "CellPredX") %in% dlls))
  expect_lt(match("cellpredx_torch_loader", dlls), match("CellPredX", dlls))
})

test_that("a training step runs inside R", {
  ms <- CellPredX:::training_step_ms(features = 200, batch = 64, classes = 3, steps = 3)
  expect_true(is.finite(ms) && ms > 0)
})
