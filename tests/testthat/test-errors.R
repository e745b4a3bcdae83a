test_that("a core error reaches R as one line from the user-facing call", {
  skip_if(CellPredXInfo()$cuda_available, "needs a machine without CUDA")
  err <- expect_error(CellPredX:::resolve_device("cuda"), class = "cellpredx_error")
  expect_match(conditionMessage(err), "device = \"cuda\" was requested but libtorch 2.11.0")
  expect_match(conditionMessage(err), "use device = \"auto\" or \"cpu\"", fixed = TRUE)
  expect_false(grepl("\n", conditionMessage(err)))
  expect_false(grepl("panicked|backtrace|rust", conditionMessage(err), ignore.case = TRUE))
})

test_that("argument errors name the argument before anything reaches Rust", {
  expect_error(CellPredX:::resolve_device("gpu"), "`device` must be one of")
  expect_error(CellPredX:::apply_threads(0), "`threads` must be a single whole number of at least 1")
  expect_error(CellPredX:::apply_threads("two"), "`threads` must be a single whole number")
})

test_that("a Rust panic becomes an R error and the session keeps working", {
  err <- expect_error(CellPredX:::call_rust(CellPredX:::trigger_panic_("deliberate test panic")),
                      class = "cellpredx_error")
  expect_match(conditionMessage(err), "internal error in trigger_panic_: deliberate test panic", fixed = TRUE)
  expect_match(conditionMessage(err), "please report it")
  # The library is still usable after the unwinding.
  expect_s3_class(CellPredXInfo(), "cellpredx_info")
  out <- CellPredX:::sparse_roundtrip(matrix(c(1, 0, 0, 2), 2, 2))
  expect_equal(out$nnz, 2)
})
