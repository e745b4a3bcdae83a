# Text from files, paths, names and labels is data: it must never run as R code (cli templates
# evaluate `{...}`), every error must name the input, and the session must keep working. Each
# entry point gets the same hostile strings.

hostile_strings <- function() {
  c(
    code = "{Sys.setenv(CELLPREDX_PWNED = 'code')}",
    markup = "{.val {Sys.setenv(CELLPREDX_PWNED = 'markup')}}",
    lone_open = "gene{",
    lone_close = "gene}x",
    quotes = "it's a \"gene\" `x`",
    newline = "line1\nline2",
    long = strrep("x", 3000)
  )
}

# Bytes that are not UTF-8 (Latin-1 "é" then braces).
not_utf8 <- rawToChar(as.raw(c(0x67, 0xe9, 0x7b, 0x7d)))

# Whether an error message shows `text` (cli re-wraps lines, so whitespace is compared loosely;
# R cuts messages at `getOption("warning.length")` characters, so a long text need only start).
mentions <- function(message, text) {
  squash <- function(x) gsub("[[:space:]]+", " ", x, useBytes = TRUE)
  grepl(substr(squash(text), 1, 200), squash(message), fixed = TRUE, useBytes = TRUE)
}

expect_no_code_ran <- function() {
  expect_identical(Sys.getenv("CELLPREDX_PWNED"), "")
}

expect_session_works <- function() {
  expect_s3_class(CellPredXInfo(), "cellpredx_info")
  expect_identical(CellPredX:::parse_rust_error("plain")$kind, "r")
}

# A small MatrixMarket dataset in `dir` with the given feature, cell and matrix lines.
write_dataset <- function(dir, features = paste0("G", 1:3), cells = c("c1", "c2"),
                          entries = c("1 1 1", "2 2 3")) {
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  writeLines(features, file.path(dir, "features.tsv"), useBytes = TRUE)
  writeLines(cells, file.path(dir, "barcodes.tsv"), useBytes = TRUE)
  writeLines(c("%%MatrixMarket matrix coordinate real general",
               sprintf("%d %d %d", length(features), length(cells), length(entries)), entries),
             file.path(dir, "matrix.mtx"), useBytes = TRUE)
  dir
}

test_that("ReadCellData: hostile paths and file content are reported, never evaluated", {
  Sys.unsetenv("CELLPREDX_PWNED")
  for (name in names(hostile_strings())) {
    text <- hostile_strings()[[name]]
    path <- file.path(tempdir(), "no-such-dir", text)
    err <- expect_error(ReadCellData(path), class = "cellpredx_error")
    expect_true(mentions(conditionMessage(err), text), info = name)
    # In the matrix file itself: the line is quoted back.
    dir <- write_dataset(tempfile("hostile-mtx"), entries = c("1 1 1", paste("2 2", gsub("\n", " ", text))))
    err <- expect_error(ReadCellData(dir), class = "cellpredx_error_invalid_input")
    expect_true(mentions(conditionMessage(err), "line 4"), info = name)
    # As a feature and a cell name: read as they are.
    dir <- write_dataset(tempfile("hostile-names"), features = c("G1", gsub("\n", " ", text), "G3"),
                         cells = c("c1", gsub("\n", " ", text)))
    data <- ReadCellData(dir)
    expect_identical(rownames(data$counts)[2], gsub("\n", " ", text))
    expect_identical(colnames(data$counts)[2], gsub("\n", " ", text))
  }
  err <- expect_error(ReadCellData(paste0(tempdir(), "/", not_utf8)), class = "cellpredx_error_invalid_input")
  expect_match(conditionMessage(err), "`path` has 1 value that is not valid UTF-8", fixed = TRUE)
  expect_no_code_ran()
  expect_session_works()
})

test_that("ReadCellData: a repeated cell in the barcodes or the metadata names the cell", {
  dir <- write_dataset(tempfile("dup-barcode"), cells = c("{c1}", "{c1}"))
  err <- expect_error(ReadCellData(dir), class = "cellpredx_error_invalid_input")
  expect_true(mentions(conditionMessage(err), "cell \"{c1}\" is named twice (cells 1 and 2)"))
  dir <- write_dataset(tempfile("dup-meta"))
  writeLines(c("cell_id\tcell_type", "c1\tT", "c2\tB", "c1\tNK"), file.path(dir, "metadata.tsv"))
  err <- expect_error(ReadCellData(dir), class = "cellpredx_error_invalid_input")
  expect_match(conditionMessage(err), "lists cell \"c1\" more than once (rows 1 and 3)", fixed = TRUE)
})

test_that("TransferLabels: hostile feature names, cell names and labels are data", {
  Sys.unsetenv("CELLPREDX_PWNED")
  set.seed(3)
  strings <- gsub("\n", " ", hostile_strings())
  genes <- c(strings, paste0("gene", seq_len(150 - length(strings))))
  simulate <- function(n, depth) {
    type <- rep(c(1, 2), length.out = n)
    rate <- outer(rep(c(2, 0.2), each = 75), type == 1, function(a, t) ifelse(t, a, 2.2 - a))
    x <- matrix(rpois(length(rate), depth * rate), 150, n, dimnames = list(genes, paste0("cell", seq_len(n))))
    Matrix::Matrix(x, sparse = TRUE)
  }
  ref <- simulate(60, 1)
  query <- simulate(40, 2)
  colnames(query)[seq_along(strings)] <- strings
  labels <- rep(strings[c("code", "markup")], length.out = 60)
  res <- TransferLabels(ref, query, ref.labels = labels, scenario = "rna_rna", threshold = 0,
                        settings = list(max_steps = 10, batch_size = 32), threads = 1, verbose = TRUE)
  expect_setequal(res$classes, unname(strings[c("code", "markup")]))
  expect_true(all(res$predictions$predicted.id %in% res$classes))
  expect_identical(rownames(res$predictions)[seq_along(strings)], unname(strings))
  # Errors that quote the names.
  duplicated_genes <- ref
  rownames(duplicated_genes)[2] <- rownames(duplicated_genes)[1]
  err <- expect_error(TransferLabels(duplicated_genes, query, ref.labels = labels, scenario = "rna_rna", verbose = FALSE),
                      class = "cellpredx_error")
  expect_true(mentions(conditionMessage(err), strings[["code"]]))
  single <- expect_warning(
    TransferLabels(ref, query, ref.labels = c(strings[["lone_open"]], rep(strings[["lone_close"]], 59)),
                   scenario = "rna_rna", settings = list(max_steps = 5, batch_size = 32), threads = 1, verbose = FALSE),
    class = "warning"
  )
  expect_true(mentions(conditionMessage(single), strings[["lone_open"]]))
  bad_labels <- labels
  bad_labels[1] <- not_utf8
  err <- expect_error(TransferLabels(ref, query, ref.labels = bad_labels, scenario = "rna_rna", verbose = FALSE),
                      class = "cellpredx_error_invalid_input")
  expect_match(conditionMessage(err), "`ref.labels` has 1 value that is not valid UTF-8", fixed = TRUE)
  expect_no_code_ran()
  expect_session_works()
})

test_that("LoadCellPredX: hostile paths and model files are reported, never evaluated", {
  Sys.unsetenv("CELLPREDX_PWNED")
  for (name in names(hostile_strings())) {
    text <- hostile_strings()[[name]]
    err <- expect_error(LoadCellPredX(file.path(tempdir(), "no-such-model", text)), class = "cellpredx_error")
    expect_true(mentions(conditionMessage(err), text), info = name)
    dir <- tempfile("hostile-model")
    dir.create(dir)
    writeLines(text, file.path(dir, "model.json"), useBytes = TRUE)
    err <- expect_error(LoadCellPredX(dir), class = "cellpredx_error_invalid_input")
    expect_match(conditionMessage(err), "is not a CellPredX model description", fixed = TRUE)
  }
  # A model directory without its weights names the missing file (this was a cli parse error).
  dir <- tempfile("no-weights-{")
  dir.create(dir)
  writeLines('{"format": 4}', file.path(dir, "model.json"))
  err <- expect_error(LoadCellPredX(dir), class = "cellpredx_error_invalid_input")
  expect_true(mentions(conditionMessage(err), dir))
  expect_no_code_ran()
  expect_session_works()
})

test_that("GeneActivity: hostile peak names and fragment paths are reported, never evaluated", {
  Sys.unsetenv("CELLPREDX_PWNED")
  annotation <- data.frame(chrom = "chr1", start = 1000, end = 5000, strand = "+", gene_name = "G1",
                           gene_id = "G1", gene_biotype = "protein_coding")
  for (name in setdiff(names(hostile_strings()), "long")) {
    text <- hostile_strings()[[name]]
    peaks <- Matrix::Matrix(matrix(1, 2, 2, dimnames = list(c("chr1-100-200", text), c("a", "b"))), sparse = TRUE)
    err <- expect_error(GeneActivity(peaks, annotation = annotation, verbose = FALSE), class = "cellpredx_error")
    expect_true(mentions(conditionMessage(err), text), info = name)
    err <- expect_error(GeneActivity(peaks[1, , drop = FALSE], annotation = annotation, fragments = text, verbose = FALSE),
                        class = "cellpredx_error")
    expect_true(mentions(conditionMessage(err), text), info = name)
  }
  expect_no_code_ran()
  expect_session_works()
})
