#' @importFrom rlang %||% .data
#' @importClassesFrom Matrix dgCMatrix
NULL

# State of this R session's CellPredX: the process that loaded it.
session <- new.env(parent = emptyenv())

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
  # libtorch's threads do not survive a fork: call_rust() refuses to compute in a forked child.
  session$pid <- Sys.getpid()
  # Apply the thread setting before any computation starts libtorch's thread pool.
  threads <- getOption("cellpredx.threads")
  threads <- if (is.numeric(threads) && length(threads) == 1 && !is.na(threads) && threads >= 1) threads else default_threads()
  set_threads_(as.integer(min(threads, max_threads_())))
  invisible()
}

.onUnload <- function(libpath) {
  library.dynam.unload("CellPredX", libpath)
}
