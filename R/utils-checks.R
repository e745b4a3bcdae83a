# Argument checks shared by the user-facing functions. Each names the argument and says what to
# do, and raises the error from the user's call.

check_count <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env(), min = 1, max = .Machine$integer.max) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x != round(x) || x < min || x > max) {
    cli::cli_abort("{.arg {arg}} must be a single whole number between {min} and {format(max, big.mark = ',', scientific = FALSE)}, not {describe_value(x)}.",
                   call = call, class = c("cellpredx_error_invalid_input", "cellpredx_error"))
  }
  invisible(x)
}

# A value as an error message shows it: a short one itself, else its type.
describe_value <- function(x) {
  if ((is.numeric(x) || is.character(x) || is.logical(x)) && length(x) == 1) {
    shown <- if (is.character(x) && !is.na(x)) encodeString(x, quote = "\"") else format(x, digits = 15)
    if (nchar(shown, type = "bytes") <= 60) return(shown)
  }
  cli::format_inline("{.obj_type_friendly {x}}")
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
  check_text(x, arg = arg, call = call)
}

# Text the core reads (names, labels, paths) must be valid UTF-8 (or plain ASCII): the core's
# strings are UTF-8, and R cannot translate other bytes for it.
check_text <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (is.character(x) && length(x)) {
    bad <- which(!validUTF8(x) | (Encoding(x) == "unknown" & !validUTF8(enc2utf8(x))))
    if (length(bad)) {
      shown <- encodeString(iconv(x[[bad[1]]], "UTF-8", "UTF-8", sub = "byte"), quote = "\"")
      cli::cli_abort(c(
        "{.arg {arg}} has {length(bad)} value{?s} that {?is/are} not valid UTF-8 text, the first at position {bad[1]}: {shown}.",
        "i" = "Convert the text first, e.g. with {.code iconv(x, from = \"latin1\", to = \"UTF-8\")}."
      ), call = call, class = c("cellpredx_error_invalid_input", "cellpredx_error"))
    }
  }
  invisible(x)
}

# The values a matrix stores: a dgCMatrix's non-zeros, every entry of a base matrix.
stored_values <- function(x) if (methods::is(x, "dgCMatrix")) x@x else as.vector(x)

check_threshold <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x < 0 || x > 1) {
    cli::cli_abort("{.arg {arg}} must be one number between 0 and 1, not {.val {x}}.", call = call, class = "cellpredx_error")
  }
  invisible(x)
}
