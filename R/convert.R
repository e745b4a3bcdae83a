# Matrices between R and the Rust core. The core keeps cells x features in CSR; a features x
# cells dgCMatrix already is that layout, so nothing is densified on the way in or out.

# The slots the core returns (p, i, x, dim) as a dgCMatrix with the given dimnames.
dgc_from_rust <- function(parts, dimnames = list(NULL, NULL)) {
  methods::new("dgCMatrix", p = parts$p, i = parts$i, x = parts$x,
               Dim = as.integer(parts$dim), Dimnames = dimnames)
}

# Sends `x` through the bridge and back: how the test suite checks the conversions.
sparse_roundtrip <- function(x, call = rlang::caller_env()) {
  x <- check_feature_matrix(x, call = call)
  out <- call_rust(sparse_roundtrip_(x), call = call)
  out$matrix <- dgc_from_rust(out$matrix, dimnames(x) %||% list(NULL, NULL))
  out
}

# Sends cell labels (character or factor) through the bridge: codes, classes and counts back.
labels_roundtrip <- function(labels, call = rlang::caller_env()) {
  if (!is.character(labels) && !is.factor(labels)) {
    cli::cli_abort("{.arg labels} must be a character vector or a factor, not {.obj_type_friendly {labels}}.",
                   call = call, class = "cellpredx_error")
  }
  call_rust(labels_roundtrip_(labels), call = call)
}
