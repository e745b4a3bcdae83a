#' @useDynLib CellPredX, .registration = TRUE
#' @importFrom rlang %||%
#' @importClassesFrom Matrix dgCMatrix
NULL

.onLoad <- function(libname, pkgname) {
  # Apply the thread setting before any computation starts libtorch's thread pool.
  threads <- getOption("cellpredx.threads") %||% default_threads()
  set_threads_(as.integer(threads))
  invisible()
}
