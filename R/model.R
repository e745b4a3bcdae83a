# Fitted models: train once, annotate more cells, save and load.

new_model <- function(handle, description_json) {
  structure(list(handle = handle, description = jsonlite::fromJSON(description_json)), class = "CellPredXModel")
}

#' Train a CellPredX model
#'
#' The training half of [TransferLabels()] on matrices: fits the network to a
#' labelled reference and an unlabelled query and returns the model, which
#' annotates further cells with [predict()][predict.CellPredXModel] and is kept
#' on disk with [SaveCellPredX()]. The query is part of training (its
#' neighbourhoods and alignment shape the embedding), so the model fits cells
#' like it best.
#'
#' @inheritParams TransferLabels
#' @return A `CellPredXModel`.
#' @examples
#' set.seed(1)
#' type <- rep(c("T", "B"), each = 100)
#' simulate <- function(depth) {
#'   rate <- outer(rep(c(2, 0.2), each = 75), type == "T", function(a, t) ifelse(t, a, 2.2 - a))
#'   x <- matrix(rpois(length(rate), depth * rate), nrow(rate),
#'               dimnames = list(paste0("gene", 1:150), paste0("cell", seq_along(type))))
#'   Matrix::Matrix(x, sparse = TRUE)
#' }
#' model <- TrainCellPredX(simulate(1), simulate(3), ref.labels = type, scenario = "rna_rna",
#'                         settings = list(max_steps = 100), threads = 1, verbose = FALSE)
#' model
#' head(predict(model, simulate(2))$predictions)
#' path <- file.path(tempdir(), "model")
#' SaveCellPredX(model, path)
#' same <- LoadCellPredX(path)
#' @export
TrainCellPredX <- function(ref, query, ref.labels, scenario = "auto", unknown = c("calibrated", "threshold", "none"),
                           threshold = 0.95, seed = 0,
                           device = c("auto", "cpu", "cuda"), threads = NULL, verbose = TRUE, settings = list()) {
  result <- TransferLabels.default(ref, query, ref.labels = ref.labels, scenario = scenario, unknown = unknown, threshold = threshold,
                                   seed = seed, device = device, threads = threads, verbose = verbose, settings = settings)
  model <- result$model
  model$history <- result$history
  model
}

#' @export
print.CellPredXModel <- function(x, ...) {
  d <- x$description
  cat(sprintf("<CellPredXModel> %s: %d features -> %d-dimensional embedding -> %d types\n",
              d$scenario, length(d$features), d$shape$embedding_dim, length(d$classes)))
  cat("  types:", paste(utils::head(d$classes, 12), collapse = ", "), if (length(d$classes) > 12) ", ..." else "", "\n")
  cat(sprintf("  trained %s; Unknown: %s; CellPredX %s\n", networks_summary(d$networks), unknown_rule_summary(d), d$package_version))
  invisible(x)
}

#' @export
summary.CellPredXModel <- function(object, ...) {
  d <- object$description
  list(scenario = d$scenario, features = length(d$features), types = d$classes,
       reference_cells = stats::setNames(d$class_cells, d$classes), networks = d$networks,
       normalization = d$normalization, scale = d$scale, unknown = d$unknown, unknown_scale = d$unknown_scale,
       novelty_cutoff = d$novelty_cutoff, threshold = d$threshold, smoothing = d$smoothing,
       prior_correction = d$prior_correction, training = d$training)
}

#' Annotate cells with a trained model
#'
#' @param object A `CellPredXModel` from [TrainCellPredX()], [LoadCellPredX()] or
#'   the `model` of a [TransferLabels()] result.
#' @param newdata Features x cells matrix (`dgCMatrix` or numeric) with feature
#'   names; its features may come in any order, extra ones are ignored and
#'   missing ones count as zero (at least 100 of the model's must be there).
#' @param unknown,threshold The rule that calls cells `"Unknown"` and its
#'   threshold, as in [TransferLabels()] (default: the model's; a calibrated
#'   rule keeps the cut-off calibrated on the model's training query).
#' @param verbose Show a progress bar.
#' @param ... Unused.
#' @return A `CellPredXResult` (see [TransferLabels()]) without training record.
#' @export
predict.CellPredXModel <- function(object, newdata, unknown = NULL, threshold = NULL, verbose = TRUE, ...) {
  call <- rlang::current_env()
  newdata <- check_feature_matrix(newdata, call = call)
  check_names(newdata, "newdata", call)
  if (!is.null(unknown)) unknown <- rlang::arg_match(unknown, unknown_rules, error_call = call)
  if (!is.null(threshold)) check_threshold(threshold, call = call)
  raw <- call_rust(model_predict_(object$handle, newdata, rownames(newdata), unknown, threshold,
                                  progress_callback("CellPredX", verbose)), call = call)
  prediction_result(raw, colnames(newdata))
}

#' Save and load CellPredX models
#'
#' `SaveCellPredX()` writes a directory with `model.safetensors` (the weights)
#' and `model.json` (features, types, preprocessing, scenario, settings and
#' package version); `LoadCellPredX()` reads it back. Models saved with
#' `saveRDS()` lose their weights: use these instead.
#'
#' @param model A `CellPredXModel`.
#' @param path A directory (created if needed).
#' @param overwrite Replace a model already saved in `path`. Without it, a
#'   directory that holds `model.safetensors` or `model.json` is refused, so that
#'   no saved model is lost by accident.
#' @param device Where the loaded model computes: `"auto"`, `"cpu"` or `"cuda"`.
#' @return `SaveCellPredX()`: `path`, invisibly. `LoadCellPredX()`: a `CellPredXModel`.
#' @examples
#' # See TrainCellPredX().
#' @export
SaveCellPredX <- function(model, path, overwrite = FALSE) {
  call <- rlang::current_env()
  if (!inherits(model, "CellPredXModel")) {
    cli::cli_abort("{.arg model} must be a {.cls CellPredXModel}, not {.obj_type_friendly {model}}.", call = call, class = "cellpredx_error")
  }
  check_path(path, call = call)
  check_flag(overwrite, call = call)
  call_rust(model_save_(model$handle, path.expand(path), overwrite), call = call)
  invisible(path)
}

# One non-empty directory path.
check_path <- function(path, arg = rlang::caller_arg(path), call = rlang::caller_env()) {
  if (!is.character(path) || length(path) != 1 || is.na(path) || !nzchar(path)) {
    cli::cli_abort("{.arg {arg}} must be one non-empty directory path, not {describe_value(path)}.",
                   call = call, class = c("cellpredx_error_invalid_input", "cellpredx_error"))
  }
  check_text(path, arg = arg, call = call)
}

#' @rdname SaveCellPredX
#' @export
LoadCellPredX <- function(path, device = c("auto", "cpu", "cuda")) {
  call <- rlang::current_env()
  device <- rlang::arg_match(device)
  check_path(path, call = call)
  raw <- call_rust(model_load_(path.expand(path), device), call = call)
  new_model(raw$model, raw$description)
}
