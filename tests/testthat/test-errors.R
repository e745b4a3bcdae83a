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
  expect_error(CellPredX:::apply_threads(0), "`threads` must be a single whole number between 1 and 2,147,483,647, not 0", fixed = TRUE)
  expect_error(CellPredX:::apply_threads("two"), "`threads` must be a single whole number between 1 and 2,147,483,647, not \"two\"", fixed = TRUE)
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

test_that("core errors arrive as condition classes of their kind, their text as data", {
  err <- expect_error(CellPredX:::call_rust(stop("\x1einvalid_input\x1ebad {Sys.setenv(CELLPREDX_PWNED = 'x')} {")),
                      class = "cellpredx_error_invalid_input")
  expect_s3_class(err, "cellpredx_error")
  expect_identical(err$kind, "invalid_input")
  expect_match(conditionMessage(err), "bad {Sys.setenv(CELLPREDX_PWNED = 'x')} {", fixed = TRUE)
  expect_identical(Sys.getenv("CELLPREDX_PWNED"), "")
  expect_error(CellPredX:::call_rust(CellPredX:::trigger_panic_("boom")), class = "cellpredx_error_internal")
  # An R error inside keeps its own message.
  err <- expect_error(CellPredX:::call_rust(stop("plain R error")), class = "cellpredx_error_r")
  expect_match(conditionMessage(err), "plain R error", fixed = TRUE)
  # A mismatched chromosome naming is told by its class, not by its words.
  peaks <- Matrix::Matrix(matrix(1, 1, 2, dimnames = list("1-100-200", c("a", "b"))), sparse = TRUE)
  annotation <- data.frame(chrom = "chr1", start = 50, end = 500, strand = "+", gene_name = "G1", gene_id = "G1",
                           gene_biotype = "protein_coding")
  expect_error(GeneActivity(peaks, annotation = annotation, verbose = FALSE), class = "cellpredx_error_chromosome_naming")
})
