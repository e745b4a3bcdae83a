#' What CellPredX runs on
#'
#' Reports the package and libtorch versions, whether CUDA is usable and on
#' which devices, and the number of compute threads. Include its output in bug
#' reports.
#'
#' @return A list of class `cellpredx_info`, printed as a short summary.
#' @export
#' @examples
#' CellPredXInfo()
CellPredXInfo <- function() {
  info <- call_rust(runtime_info_())
  info$package_version <- as.character(utils::packageVersion("CellPredX"))
  structure(info, class = "cellpredx_info")
}

#' @export
format.cellpredx_info <- function(x, ...) {
  cuda <- if (isTRUE(x$cuda_available)) {
    sprintf("yes (%d device%s: %s)", x$cuda_device_count,
            if (x$cuda_device_count == 1) "" else "s",
            paste(x$cuda_device_names, collapse = ", ") %|empty|% "unnamed")
  } else if (isTRUE(x$built_with_cuda)) {
    "no (built with CUDA, but no GPU is visible)"
  } else {
    "no (CPU-only build)"
  }
  c(
    sprintf("CellPredX %s", x$package_version),
    sprintf("libtorch:  %s (OpenMP %s, MKL %s)", x$libtorch_version,
            if (isTRUE(x$openmp)) "yes" else "no", if (isTRUE(x$mkl)) "yes" else "no"),
    sprintf("CUDA:      %s", cuda),
    sprintf("device:    %s (device = \"auto\")", resolve_device("auto")),
    sprintf("threads:   %d (options(cellpredx.threads = ))", x$threads)
  )
}

#' @export
print.cellpredx_info <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

`%|empty|%` <- function(x, y) if (length(x) == 0 || !nzchar(x)) y else x

# Physical cores when R can tell, else logical ones: libtorch's OpenMP threads busy-wait, and
# hyper-threads sharing a core slow each other down.
default_threads <- function() {
  n <- suppressWarnings(parallel::detectCores(logical = FALSE))
  if (is.na(n) || n < 1) n <- suppressWarnings(parallel::detectCores())
  if (is.na(n) || n < 1) 1L else as.integer(n)
}

# Applies a `threads` argument (NULL = the option, else the default) for the calls that follow.
# More threads than the cores the process may use are capped there, with a warning: thousands of
# threads exhaust the OS and crash the session.
apply_threads <- function(threads, call = rlang::caller_env()) {
  from_option <- is.null(threads) && !is.null(getOption("cellpredx.threads"))
  arg <- if (from_option) "options(cellpredx.threads)" else "threads"
  threads <- threads %||% getOption("cellpredx.threads") %||% default_threads()
  check_count(threads, arg = arg, call = call)
  cores <- call_rust(max_threads_(), call = call)
  if (threads > cores) {
    cli::cli_warn("{.arg {arg}} = {threads} is more than the {cores} core{?s} this machine gives R; using {cores}.",
                  call = call, class = "cellpredx_warning_threads")
    threads <- cores
  }
  invisible(call_rust(set_threads_(as.integer(threads)), call = call))
}

# "auto", "cpu" or "cuda" to the device the core will use: "cpu" or "cuda:0".
resolve_device <- function(device = "auto", call = rlang::caller_env()) {
  device <- rlang::arg_match0(device, c("auto", "cpu", "cuda"), arg_nm = "device", error_call = call)
  call_rust(resolve_device_(device), call = call)
}

# Milliseconds per training step of the CellPredX network on random minibatches of `batch`
# cells x `features` (the P1 shape by default): how bench/threads.R measures thread settings.
training_step_ms <- function(features = 1677, batch = 512, classes = 19, steps = 50,
                             device = "cpu", threads = NULL) {
  apply_threads(threads)
  call_rust(training_step_ms_(as.integer(features), as.integer(batch), as.integer(classes),
                              as.integer(steps), device))
}
