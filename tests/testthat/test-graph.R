brute_force_neighbours <- function(x, k, metric) {
  d <- if (metric == "manhattan") as.matrix(stats::dist(x, "manhattan")) else {
    u <- x / sqrt(rowSums(x^2))
    1 - u %*% t(u)
  }
  diag(d) <- Inf
  unname(t(apply(d, 1, function(row) order(row, seq_along(row))[seq_len(k)])))
}

test_that("neighbours match a brute-force search in R for both metrics", {
  set.seed(7)
  x <- matrix(rnorm(300 * 8), 300, 8)
  for (metric in c("manhattan", "cosine")) {
    g <- CellPredX:::query_neighbours(x, k = 10, metric = metric, verbose = FALSE)
    expect_identical(dim(g$neighbours), c(300L, 10L))
    expect_identical(g$neighbours, brute_force_neighbours(x, 10, metric))
    expect_true(all(apply(g$distances, 1, function(d) all(diff(d) >= 0))))
  }
  manhattan <- CellPredX:::query_neighbours(x, k = 3, verbose = FALSE)
  expect_equal(manhattan$distances[1, 1], sum(abs(x[1, ] - x[manhattan$neighbours[1, 1], ])), tolerance = 1e-5)
})

test_that("the progress callback sees every cell, in order", {
  seen <- numeric()
  callback <- function(stage, done, total, metrics) {
    expect_identical(stage, "neighbour graph")
    expect_identical(total, 2000)
    seen <<- c(seen, done)
  }
  x <- matrix(runif(2000 * 2000), 2000, 2000)
  CellPredX:::call_rust(CellPredX:::knn_graph_(x, 5L, "manhattan", callback))
  expect_identical(seen[length(seen)], 2000)
  expect_true(all(diff(seen) > 0))
})

test_that("bad arguments are refused by name", {
  x <- matrix(rnorm(20), 10, 2)
  expect_error(CellPredX:::query_neighbours(x, k = 10, verbose = FALSE), "`k` \\(10\\) must be smaller than the number of cells \\(10\\)")
  expect_error(CellPredX:::query_neighbours(x, metric = "euclid", verbose = FALSE), "`metric` must be one of")
  expect_error(CellPredX:::query_neighbours(as.data.frame(x), verbose = FALSE), "`embedding` must be a numeric")
  x[3, 1] <- NA
  expect_error(CellPredX:::query_neighbours(x, k = 2, verbose = FALSE), "non-finite values")
})

test_that("Ctrl-C stops a long Rust call before it finishes and the session stays usable", {
  skip_on_os("windows")
  skip_if_not_installed("processx")
  script <- tempfile(fileext = ".R")
  # The call's own progress reports say how far it got: stopping before the last one shows the
  # interrupt ended it, whatever the machine's load (no wall-clock bound).
  writeLines(c(
    "library(CellPredX)",
    "x <- matrix(runif(60000 * 50), 60000, 50)",
    "last <- c(0, NA)",
    "note <- function(stage, done, total, metrics) { last <<- c(done, total); if (done > 0) cat('started\\n'); invisible() }",
    "res <- tryCatch(CellPredX:::call_rust(CellPredX:::knn_graph_(x, 10L, 'manhattan', note)), interrupt = function(e) 'interrupted')",
    "cat('result:', if (is.character(res)) res else 'finished', '\\n')",
    "cat('progress:', last[1], 'of', last[2], '\\n')",
    "cat('after:', CellPredX:::sparse_roundtrip(diag(3))$nnz, '\\n')"
  ), script)
  p <- processx::process$new(file.path(R.home("bin"), "Rscript"), script, stdout = "|", stderr = "2>&1")
  on.exit(p$kill(), add = TRUE)
  output <- ""
  deadline <- Sys.time() + 120
  while (!grepl("started", output) && p$is_alive() && Sys.time() < deadline) {
    p$poll_io(1000)
    output <- paste0(output, p$read_output())
  }
  expect_match(output, "started")
  p$interrupt()
  # Generous: a call that ignored the interrupt would run to its end and say "finished".
  p$wait(120000)
  expect_false(p$is_alive())
  output <- paste0(output, p$read_all_output())
  expect_match(output, "result: interrupted")
  progress <- regmatches(output, regexec("progress: ([0-9]+) of ([0-9]+)", output))[[1]]
  expect_length(progress, 3)
  expect_lt(as.numeric(progress[2]), as.numeric(progress[3]))
  expect_match(output, "after: 3")
})
