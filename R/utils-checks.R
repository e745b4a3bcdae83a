# Argument checks shared by the user-facing functions. Each names the argument and says what to
# do, and raises the error from the user's call.

check_count <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env(), min = 1) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x != round(x) || x < min) {
    cli::cli_abort("{.arg {arg}} must be a single whole number of at least {min}, not {.obj_type_friendly {x}}.",
                   call = call, class = "cellpredx_error")
  }
  invisible(x)
}

check_flag <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!rlang::is_bool(x)) {
    cli::cli_abort("{.arg {arg}} must be TRUE or FALSE, not {.obj_type_friendly {x}}.",
                   call = call, class = "cellpredx_error")
  }
  invisible(x)
}

# A features x cells matrix the core can take: a dgCMatrix (other sparse classes are converted,
# staying sparse) or a base numeric matrix.
check_feature_matrix <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (methods::is(x, "dgCMatrix") || (is.matrix(x) && (is.double(x) || is.integer(x)))) {
    return(x)
  }
  if (methods::is(x, "sparseMatrix")) {
    return(methods::as(methods::as(methods::as(x, "CsparseMatrix"), "generalMatrix"), "dMatrix"))
  }
  cli::cli_abort(c(
    "{.arg {arg}} must be a features x cells {.cls dgCMatrix} or numeric matrix, not {.obj_type_friendly {x}}.",
    "i" = "Convert it with {.code Matrix::Matrix(x, sparse = TRUE)} or {.code as.matrix(x)}."
  ), call = call, class = "cellpredx_error")
}

# NULL, or a character vector without missing values.
check_name_vector <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!is.null(x) && (!is.character(x) || anyNA(x))) {
    cli::cli_abort("{.arg {arg}} must be a character vector of names, not {.obj_type_friendly {x}}.",
                   call = call, class = "cellpredx_error")
  }
  invisible(x)
}

check_threshold <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x < 0 || x > 1) {
    cli::cli_abort("{.arg {arg}} must be one number between 0 and 1, not {.val {x}}.", call = call, class = "cellpredx_error")
  }
  invisible(x)
}
