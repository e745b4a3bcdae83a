# The query neighbour graph the contrastive loss samples positive pairs from.

# Each cell's k nearest neighbours in a cells x dimensions embedding (exact search). Returns a
# list: `neighbours`, a cells x k matrix of 1-based row numbers, nearest first, and `distances`.
query_neighbours <- function(embedding, k = 10, metric = c("manhattan", "cosine"),
                             threads = NULL, verbose = TRUE, call = rlang::caller_env()) {
  metric <- rlang::arg_match(metric, error_call = call)
  if (!is.matrix(embedding) || !is.numeric(embedding)) {
    cli::cli_abort("{.arg embedding} must be a numeric cells x dimensions matrix, not {.obj_type_friendly {embedding}}.",
                   call = call, class = "cellpredx_error")
  }
  check_count(k, call = call)
  if (k >= nrow(embedding)) {
    cli::cli_abort("{.arg k} ({k}) must be smaller than the number of cells ({nrow(embedding)}).",
                   call = call, class = "cellpredx_error")
  }
  apply_threads(threads, call = call)
  storage.mode(embedding) <- "double"
  progress <- progress_callback("CellPredX", verbose)
  call_rust(knn_graph_(embedding, as.integer(k), metric, progress), call = call)
}
