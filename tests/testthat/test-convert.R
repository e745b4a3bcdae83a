roundtrip <- function(x) CellPredX:::sparse_roundtrip(x)

test_that("a dgCMatrix survives the round trip with empty cells and all-zero features", {
  m <- Matrix::sparseMatrix(i = c(1, 3, 3, 5), j = c(1, 1, 4, 4), x = c(1, 2, 3, 4.5),
                            dims = c(6, 5), dimnames = list(paste0("g", 1:6), paste0("c", 1:5)))
  out <- roundtrip(m)
  expect_identical(out$matrix, m)
  expect_equal(c(out$cells, out$features, out$nnz), c(5, 6, 4))
  # Cells 2, 3 and 5 have no counts; features 2, 4 and 6 are zero in every cell.
  expect_equal(Matrix::colSums(out$matrix)[c(2, 3, 5)], c(c2 = 0, c3 = 0, c5 = 0))
})

test_that("0-row, 0-column and 0 x 0 matrices convert", {
  for (dims in list(c(0, 4), c(4, 0), c(0, 0))) {
    m <- Matrix::sparseMatrix(i = integer(), j = integer(), x = numeric(), dims = dims)
    out <- roundtrip(m)
    expect_identical(dim(out$matrix), as.integer(dims))
    expect_equal(out$nnz, 0)
    expect_equal(c(out$features, out$cells), dims)
  }
})

test_that("base matrices, integer matrices and other sparse classes keep their values", {
  dense <- matrix(c(0, 1.5, 0, 0, 0, 2, 3, 0, 0), 3, 3)
  expect_equal(as.matrix(roundtrip(dense)$matrix), dense)
  expect_equal(roundtrip(dense)$nnz, 3)
  int <- matrix(c(0L, 7L, 0L, 1L), 2, 2)
  expect_equal(as.matrix(roundtrip(int)$matrix), int * 1.0)
  triplet <- methods::as(Matrix::Matrix(dense, sparse = TRUE), "TsparseMatrix")
  expect_equal(as.matrix(roundtrip(triplet)$matrix), dense)
})

test_that("values are kept in single precision and invalid values are counted, not hidden", {
  m <- Matrix::sparseMatrix(i = 1:4, j = 1:4, x = c(1 / 3, -2, NaN, Inf), dims = c(4, 4))
  out <- roundtrip(m)
  expect_equal(out$matrix@x[1], 1 / 3, tolerance = 1e-7)
  expect_false(identical(out$matrix@x[1], 1 / 3))
  expect_equal(c(out$non_finite, out$negative), c(2, 1))
})

test_that("a 20,000 x 10,000 matrix at 2% density converts without a dense copy", {
  skip_if_no_proc_memory()
  set.seed(1)
  nnz <- 20000 * 10000 * 0.02
  m <- Matrix::sparseMatrix(i = sample.int(20000, nnz, replace = TRUE),
                            j = sample.int(10000, nnz, replace = TRUE),
                            x = rpois(nnz, 3) + 1, dims = c(20000, 10000), repr = "C")
  out <- NULL
  peak <- peak_memory_mb(out <- roundtrip(m))
  expect_equal(out$nnz, length(m@x))
  expect_identical(out$matrix@i, m@i)
  expect_identical(out$matrix@p, m@p)
  expect_equal(out$matrix@x, m@x)
  # The returned dgCMatrix (12 bytes per non-zero) and the core's CSR (8 bytes per non-zero)
  # make ~80 MB; a dense copy would be 800 MB in single precision.
  dense_mb <- 20000 * 10000 * 4 / 2^20
  expect_lt(peak, 250)
  expect_lt(peak, dense_mb / 3)
})

test_that("wrong types are refused with the argument's name", {
  expect_error(roundtrip(matrix("a", 2, 2)), "`x` must be a features x cells <dgCMatrix> or numeric matrix")
  expect_error(roundtrip(data.frame(a = 1:3)), "not a data frame")
  expect_error(roundtrip(1:10), "not an integer vector")
  expect_error(roundtrip(matrix(TRUE, 2, 2)), "numeric matrix")
})

test_that("a malformed dgCMatrix gets the core's explanation, not a crash", {
  m <- Matrix::sparseMatrix(i = c(1, 2), j = c(1, 2), x = c(1, 1), dims = c(3, 3))
  bad <- m
  bad@i[2] <- 7L # row index outside the 3 features
  expect_error(roundtrip(bad), "`x`: sparse matrix: index 7 in row 1 is outside 0..3", fixed = TRUE)
  bad <- m
  bad@p[2] <- 5L
  expect_error(roundtrip(bad), "`x`: sparse matrix", fixed = TRUE)
  expect_identical(roundtrip(m)$matrix, m)
})

test_that("labels cross as characters or factors, keeping factor level order", {
  chr <- CellPredX:::labels_roundtrip(c("T", "B", "T", "NK"))
  expect_identical(chr$classes, c("B", "NK", "T"))
  expect_identical(chr$codes, c(3L, 1L, 3L, 2L))
  expect_identical(chr$counts, c(1L, 1L, 2L))
  fct <- CellPredX:::labels_roundtrip(factor(c("T", "B", "T"), levels = c("T", "Mono", "B")))
  expect_identical(fct$classes, c("T", "B"))
  expect_identical(fct$codes, c(1L, 2L, 1L))
})

test_that("missing, empty and non-text labels are refused with the cell's position", {
  expect_error(CellPredX:::labels_roundtrip(c("T", NA)), "label of cell 2 is missing (NA)", fixed = TRUE)
  expect_error(CellPredX:::labels_roundtrip(factor(c("B", NA, "T"))), "label of cell 2 is missing (NA)", fixed = TRUE)
  expect_error(CellPredX:::labels_roundtrip(c("", "B")), "label of cell 1 is empty", fixed = TRUE)
  expect_error(CellPredX:::labels_roundtrip(1:3), "`labels` must be a character vector or a factor")
})
