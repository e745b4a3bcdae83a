test_that("a MatrixMarket directory reads as Matrix::readMM does, with its metadata", {
  skip_without_data("garnett_pbmc_facs_800")
  dir <- file.path(shared_data_dir(), "garnett_pbmc_facs_800", "rna")
  data <- ReadCellData(dir)
  expected <- methods::as(methods::as(Matrix::readMM(gzfile(file.path(dir, "matrix.mtx.gz"))), "CsparseMatrix"), "generalMatrix")
  expect_s4_class(data$counts, "dgCMatrix")
  dimnames(expected) <- dimnames(data$counts)
  expect_equal(data$counts, expected)
  expect_identical(rownames(data$counts), readLines(file.path(dir, "features.tsv")))
  expect_identical(colnames(data$counts), readLines(file.path(dir, "barcodes.tsv")))
  meta <- utils::read.delim(file.path(dir, "metadata.tsv"), stringsAsFactors = FALSE)
  expect_identical(rownames(data$meta), colnames(data$counts))
  expect_identical(data$meta$cell_type, meta$cell_type[match(colnames(data$counts), meta[[1]])])

  picked <- rev(colnames(data$counts)[c(3, 10, 7)])
  some <- ReadCellData(dir, cells = picked)
  expect_identical(colnames(some$counts), picked)
  expect_equal(some$counts, data$counts[, picked])
  expect_identical(some$meta$cell_type, data$meta[picked, "cell_type"])
  expect_error(ReadCellData(dir, cells = c(picked, "not-a-cell")), "1 of the 4 `cells` are not in", class = "cellpredx_error")
  expect_error(ReadCellData(dir, obs = "colour"), "has no column 'colour'; its columns are: cell_id, cell_type")
})

test_that("an AnnData file reads with its obs columns", {
  skip_if_not_installed("hdf5r")
  path <- tempfile(fileext = ".h5ad")
  file <- hdf5r::H5File$new(path, mode = "w")
  x <- file$create_group("X")  # cells x genes, CSR
  hdf5r::h5attr(x, "encoding-type") <- "csr_matrix"
  hdf5r::h5attr(x, "shape") <- c(3L, 4L)
  x[["indptr"]] <- c(0L, 2L, 3L, 5L)
  x[["indices"]] <- c(0L, 2L, 3L, 0L, 1L)
  x[["data"]] <- c(1, 2, 3, 4, 5)
  obs <- file$create_group("obs")
  hdf5r::h5attr(obs, "_index") <- "_index"
  obs[["_index"]] <- c("c1", "c2", "c3")
  type <- obs$create_group("cell_type")
  hdf5r::h5attr(type, "encoding-type") <- "categorical"
  type[["categories"]] <- c("B", "T")
  type[["codes"]] <- c(1L, 0L, 1L)
  var <- file$create_group("var")
  hdf5r::h5attr(var, "_index") <- "gene_ids"
  var[["gene_ids"]] <- paste0("g", 1:4)
  file$close_all()

  data <- ReadCellData(path, obs = "cell_type")
  expected <- Matrix::sparseMatrix(i = c(1, 3, 4, 1, 2), j = c(1, 1, 2, 3, 3), x = c(1, 2, 3, 4, 5), dims = c(4, 3),
                                   dimnames = list(paste0("g", 1:4), c("c1", "c2", "c3")))
  expect_equal(data$counts, expected)
  expect_identical(data$meta, data.frame(cell_type = c("T", "B", "T"), row.names = c("c1", "c2", "c3")))
  expect_error(ReadCellData(path, obs = "batch"), "obs has no column 'batch'")
})

test_that("a bad path or argument gets one clear error", {
  expect_error(ReadCellData(3), "`path` must be one path", class = "cellpredx_error")
  expect_error(ReadCellData(c("a", "b")), "`path` must be one path", class = "cellpredx_error")
  expect_error(ReadCellData(file.path(tempdir(), "no-such-dataset")), "does not exist")
  text <- tempfile(fileext = ".csv")
  writeLines("a,b", text)
  expect_error(ReadCellData(text), "unknown dataset format")
  expect_error(ReadCellData(tempdir(), cells = 1:3), "`cells` must be a character vector", class = "cellpredx_error")
})
