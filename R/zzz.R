#' @importFrom rlang %||% .data
#' @importClassesFrom Matrix dgCMatrix
NULL

# The shared libraries are loaded here rather than by useDynLib(): libtorch has to be loaded by
# the loader library first (see src/torch-loader/loader.c), and NAMESPACE cannot order that.
.onLoad <- function(libname, pkgname) {
  library.dynam("cellpredx_torch_loader", pkgname, libname)
  dll <- library.dynam("CellPredX", pkgname, libname)
  # What useDynLib(.registration = TRUE) would do: one object per registered routine, which the
  # generated wrappers in R/extendr-wrappers.R pass to .Call().
  ns <- topenv()
  routines <- getDLLRegisteredRoutines(dll)[[".Call"]]
  for (name in names(routines)) {
    assign(name, routines[[name]], envir = ns)
  }
  # Apply the thread setting before any computation starts libtorch's thread pool.
  threads <- getOption("cellpredx.threads") %||% default_threads()
  set_threads_(as.integer(threads))
  invisible()
}

.onUnload <- function(libpath) {
  library.dynam.unload("CellPredX", libpath)
}
