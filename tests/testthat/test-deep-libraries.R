# Read-count-sized libraries (1e5-1e6 reads per cell, most genes detected in every cell) give
# the encoder inputs with a large squared norm; with the defaults such small references used
# to diverge as soon as the center loss started.

deep_library_pair <- function(genes = 2000, per_type = 67, query_per_type = 50) {
  set.seed(18)
  types <- c("alpha", "beta", "gamma")
  base <- stats::rlnorm(genes, 0, 1.5)
  profile <- sapply(seq_along(types), function(k) {
    p <- base
    markers <- ((k - 1) * 60 + 1):(k * 60)
    p[markers] <- p[markers] * 8
    p / sum(p)
  })
  efficiency <- stats::rlnorm(genes, 0, 0.5)  # the query's protocol
  side <- function(n, scale, prefix) {
    label <- rep(types, each = n)
    depth <- exp(stats::runif(length(label), log(1e5), log(1e6)))
    counts <- sapply(seq_along(label), function(j) {
      p <- profile[, match(label[j], types)] * scale
      stats::rpois(genes, depth[j] * p / sum(p))
    })
    dimnames(counts) <- list(sprintf("g%04d", seq_len(genes)), sprintf("%s%03d", prefix, seq_along(label)))
    list(counts = Matrix::Matrix(counts, sparse = TRUE), labels = label)
  }
  list(ref = side(per_type, 1, "r"), query = side(query_per_type, efficiency, "q"))
}

test_that("a small reference with deep libraries transfers with the defaults", {
  pair <- deep_library_pair()
  expect_gt(min(Matrix::colSums(pair$ref$counts)), 5e4)
  res <- TransferLabels(pair$ref$counts, pair$query$counts, ref.labels = pair$ref$labels,
                        scenario = "rna_rna", threads = 2, verbose = FALSE)
  expect_true(all(is.finite(res$history$total)))
  expect_true(all(is.finite(res$probabilities)))
  expect_equal(unname(colSums(res$probabilities)), rep(1, ncol(pair$query$counts)), tolerance = 1e-5)
  expect_true(all(is.finite(res$predictions$prediction.score.max)))
  expect_s3_class(res$recoveries, "data.frame")
  # Three well-separated types: nearly every cell right.
  expect_gt(mean(res$predictions$best.type == pair$query$labels), 0.9)
})
