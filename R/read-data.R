# ReadCellData(): datasets from disk, read by the Rust core.

#' Read a single-cell dataset from disk
#'
#' Reads a count matrix, kept sparse, with its feature and cell names, from the
#' layouts single-cell tools write: a 10x-style MatrixMarket directory
#' (`matrix.mtx` or `matrix.mtx.gz`, `features.tsv` or `genes.tsv`,
#' `barcodes.tsv`), a 10x HDF5 file (`.h5`) or an AnnData file (`.h5ad`). No
#' other package is needed for any of them. A directory's `metadata.tsv` (first
#' column: the cell names) comes along as the cell metadata; from an `.h5ad`,
#' the `obs` columns named in `obs` do. Values are read in single precision, as
#' the core computes (exact for counts).
#'
#' @param path A dataset directory, `.h5` or `.h5ad` file.
#' @param cells Optional character vector: keep only these cells, in this order.
#' @param obs Optional character vector of metadata columns to read by name,
#'   e.g. `"cell_type"` from an `.h5ad` file's `obs`.
#' @return A list with `counts`, a features x cells `dgCMatrix`, and `meta`, a
#'   data frame with one row per cell (row names: the cell names).
#' @examples
#' # Write a small MatrixMarket dataset and read it back.
#' example <- readRDS(system.file("extdata", "pbmc_subset.rds", package = "CellPredX"))
#' dir <- file.path(tempdir(), "pbmc_query")
#' dir.create(dir, showWarnings = FALSE)
#' Matrix::writeMM(example$query_rna, file.path(dir, "matrix.mtx"))
#' writeLines(rownames(example$query_rna), file.path(dir, "features.tsv"))
#' writeLines(colnames(example$query_rna), file.path(dir, "barcodes.tsv"))
#' utils::write.table(cbind(cell_id = colnames(example$query_rna), example$query_meta),
#'                    file.path(dir, "metadata.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
#' query <- ReadCellData(dir)
#' dim(query$counts)
#' table(query$meta$cell_type)
#' @export
ReadCellData <- function(path, cells = NULL, obs = NULL) {
  call <- rlang::current_env()
  if (!is.character(path) || length(path) != 1 || is.na(path) || !nzchar(path)) {
    cli::cli_abort("{.arg path} must be one path to a dataset directory, {.file .h5} or {.file .h5ad} file, not {.obj_type_friendly {path}}.",
                   call = call, class = "cellpredx_error")
  }
  check_text(path, call = call)
  check_name_vector(cells, call = call)
  check_name_vector(obs, call = call)
  path <- path.expand(path)
  raw <- call_rust(read_dataset_(path), call = call)
  counts <- dgc_from_rust(raw$matrix, list(raw$features, raw$cells))
  if (!is.null(cells)) {
    absent <- setdiff(cells, colnames(counts))
    if (length(absent)) {
      cli::cli_abort(c("{length(absent)} of the {length(cells)} {.arg cells} are not in {.path {path}}.",
                       "i" = "The first is {.val {absent[1]}}; the dataset has {ncol(counts)} cells."),
                     call = call, class = "cellpredx_error")
    }
    counts <- counts[, cells, drop = FALSE]
  }
  list(counts = counts, meta = read_cell_metadata(path, colnames(counts), obs, call))
}

# The metadata rows of `cells`: a directory's metadata.tsv (all its columns) plus the `obs`
# columns read by the core, which finds them in metadata.tsv or an .h5ad's obs.
read_cell_metadata <- function(path, cells, obs, call) {
  meta <- data.frame(row.names = cells)
  table_file <- file.path(path, "metadata.tsv")
  if (dir.exists(path) && file.exists(table_file)) {
    table <- utils::read.delim(table_file, stringsAsFactors = FALSE, check.names = FALSE)
    repeated <- anyDuplicated(table[[1]])
    if (repeated) {
      cli::cli_abort("{.path {table_file}} lists cell {.val {table[[1]][repeated]}} more than once (rows {match(table[[1]][repeated], table[[1]])} and {repeated}); each cell needs exactly one row.",
                     call = call, class = c("cellpredx_error_invalid_input", "cellpredx_error"))
    }
    row <- match(cells, table[[1]])
    if (anyNA(row)) {
      cli::cli_abort("{.path {table_file}} has no row for {sum(is.na(row))} of the {length(cells)} cells (the first is {.val {cells[is.na(row)][1]}}).",
                     call = call, class = "cellpredx_error")
    }
    meta <- table[row, , drop = FALSE]
    rownames(meta) <- cells
  }
  for (column in setdiff(obs, names(meta))) {
    meta[[column]] <- call_rust(read_cell_labels_(path, column, cells), call = call)
  }
  meta
}
