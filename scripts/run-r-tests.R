# Runs the testthat suite against the installed package and ends with one summary line,
# "N passed, N failed, N skipped"; exits non-zero on any failure or error.
library(testthat)
library(CellPredX)
results <- as.data.frame(test_dir("tests/testthat", package = "CellPredX", load_package = "installed",
                                  reporter = ProgressReporter$new(show_praise = FALSE),
                                  stop_on_failure = FALSE))
failed <- sum(results$failed) + sum(results$error)
skipped <- sum(results$skipped)
passed <- sum(results$nb) - sum(results$failed) - sum(results$skipped)
cat(sprintf("\nR tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped))
quit(status = if (failed > 0) 1 else 0)
