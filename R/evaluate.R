# EvaluateLabels(): how well a transfer did, on data whose true labels are known.

#' Score a transfer against known labels
#'
#' Accuracy and macro-F1 over the query cells whose true type the reference
#' has (each cell's most probable type is scored, with no threshold, as peers
#' are usually compared), per-type recall, precision and F1, and, when the
#' query holds types the reference lacks, how well the open-set score
#' (`novelty`: a cell's distance to the nearest reference cells in the
#' embedding, averaged over its neighbourhood in the query) separates those
#' cells: AUROC and OSCR.
#'
#' @param object A [TransferLabels()] result, or the Seurat /
#'   SingleCellExperiment query it annotated.
#' @param truth The true type of each query cell: a vector, or the name of a
#'   metadata / `colData` column of `object`.
#' @param map Optional renaming of predicted types before scoring, as a named
#'   character vector (`c(old = "new")`), e.g. to collapse reference subtypes
#'   into the query's coarser labels. Types renamed to the same name merge.
#' @return A `CellPredXEvaluation`: a list with `accuracy`, `macro_f1`, `auroc`
#'   and `oscr` (`NA` without novel types), `scored_cells`, `novel_cells`,
#'   `per_type` (a data frame), and the decision the labels (`predicted.id`)
#'   make: `label_accuracy` (the share of shared-type cells whose label is their
#'   true type; Unknown counts as wrong), `unknown_shared` and `unknown_novel`
#'   (the shares of shared-type and of novel cells called Unknown).
#' @examples
#' \donttest{
#' set.seed(1)
#' type <- rep(c("T", "B"), each = 100)
#' simulate <- function(depth) {
#'   rate <- outer(rep(c(2, 0.2), each = 75), type == "T", function(a, t) ifelse(t, a, 2.2 - a))
#'   x <- matrix(rpois(length(rate), depth * rate), nrow(rate),
#'               dimnames = list(paste0("gene", 1:150), paste0("cell", seq_along(type))))
#'   Matrix::Matrix(x, sparse = TRUE)
#' }
#' result <- TransferLabels(simulate(1), simulate(3), ref.labels = type, scenario = "rna_rna",
#'                          settings = list(max_steps = 100), threads = 1, verbose = FALSE)
#' EvaluateLabels(result, type)
#' }
#' @export
EvaluateLabels <- function(object, truth, map = NULL) {
  call <- rlang::current_env()
  annotation <- annotation_of(object, call = call)
  predictions <- annotation$predictions
  truth <- true_labels(object, truth, nrow(predictions), call)
  if (!is.null(map) && (!is.character(map) || is.null(names(map)) || anyNA(map))) {
    cli::cli_abort("{.arg map} must be a named character vector, e.g. {.code c(\"Naive CD4 T\" = \"CD4 T cells\")}.",
                   call = call, class = "cellpredx_error")
  }
  rename <- function(x) rename_types(x, map)
  scores <- call_rust(evaluate_labels_(truth, rename(predictions$best.type), unique(rename(annotation$classes)),
                                       as.double(predictions$novelty)), call = call)
  scores$per_type <- as.data.frame(scores$per_type, stringsAsFactors = FALSE)
  scores$auroc <- scores$auroc %||% NA_real_
  scores$oscr <- scores$oscr %||% NA_real_
  # The decision as well as the ranking: how often the labels (predicted.id) are right and how
  # often they say Unknown, on cells of shared types and on novel cells.
  shared <- truth %in% unique(rename(annotation$classes))
  unknown <- predictions$predicted.id == "Unknown"
  scores$label_accuracy <- mean(rename(predictions$predicted.id)[shared] == truth[shared])
  scores$unknown_shared <- mean(unknown[shared])
  scores$unknown_novel <- if (any(!shared)) mean(unknown[!shared]) else NA_real_
  structure(scores, class = "CellPredXEvaluation")
}

# Predicted types renamed by `map` (c(old = "new")); types it does not name stay as they are.
rename_types <- function(x, map) ifelse(x %in% names(map), unname(map[x]), x)

#' @export
print.CellPredXEvaluation <- function(x, ...) {
  cat(sprintf("<CellPredXEvaluation> accuracy %.3f, macro-F1 %.3f over %d cells of shared types\n",
              x$accuracy, x$macro_f1, x$scored_cells))
  if (x$novel_cells > 0 && !is.na(x$auroc)) {
    cat(sprintf("  novel types: %d cells, AUROC %.3f, OSCR %.3f\n", x$novel_cells, x$auroc, x$oscr))
  }
  cat(sprintf("  labels (predicted.id): accuracy %.3f; Unknown: %.1f%% of shared-type cells%s\n", x$label_accuracy,
              100 * x$unknown_shared, if (is.na(x$unknown_novel)) "" else sprintf(", %.1f%% of novel cells", 100 * x$unknown_novel)))
  print(x$per_type, row.names = FALSE, digits = 3)
  invisible(x)
}
