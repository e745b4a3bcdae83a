# Plots of what TransferLabels() and DeterminantGenes() return; each function returns a ggplot.

# The predictions and embedding of a TransferLabels() result or of an object it annotated.
annotation_of <- function(object, call = rlang::caller_env()) {
  if (inherits(object, "CellPredXResult")) {
    return(list(predictions = object$predictions, embedding = object$embedding, classes = object$classes,
                threshold = object$settings$threshold %||% NA_real_, unknown = object$settings$unknown %||% "threshold"))
  }
  if (inherits(object, "Seurat")) {
    record <- annotation_record(SeuratObject::Misc(object, "CellPredX"), "Misc(object, \"CellPredX\")", call = call)
    meta <- object[[]]
    embedding <- SeuratObject::Embeddings(object, "cellpredx")
  } else if (methods::is(object, "SingleCellExperiment")) {
    record <- annotation_record(S4Vectors::metadata(object)$CellPredX, "metadata(object)$CellPredX", call = call)
    meta <- as.data.frame(SummarizedExperiment::colData(object))
    embedding <- SingleCellExperiment::reducedDim(object, "CellPredX")
  } else {
    cli::cli_abort("{.arg object} must be a {.fn TransferLabels} result or an object it annotated, not {.obj_type_friendly {object}}.",
                   call = call, class = "cellpredx_error")
  }
  # The per-cell columns TransferLabels() wrote, read back from the metadata so that they follow
  # the object when its cells are subset or reordered.
  columns <- annotation_column_names(record$prefix)
  if (!all(columns %in% names(meta))) {
    cli::cli_abort("{.arg object} lacks the column{?s} {.val {setdiff(columns, names(meta))}} that {.fn TransferLabels} writes; run it again.",
                   call = call, class = "cellpredx_error")
  }
  predictions <- stats::setNames(meta[columns], names(columns))
  list(predictions = predictions, embedding = embedding, classes = record$classes,
       threshold = record$settings$threshold %||% NA_real_, unknown = record$settings$unknown %||% "threshold")
}

# The true labels of an annotated object's cells: a vector, or a metadata / colData column name.
true_labels <- function(object, truth, n, call) {
  meta <- if (inherits(object, "Seurat")) object[[]]
          else if (methods::is(object, "SingleCellExperiment")) as.data.frame(SummarizedExperiment::colData(object))
          else NULL
  truth <- metadata_labels(truth, meta, n, arg = "truth", owner = "the object", call = call)
  if (length(truth) != n) {
    cli::cli_abort("{.arg truth} has {length(truth)} value{?s} for {n} cell{?s}.", call = call, class = "cellpredx_error")
  }
  if (anyNA(truth)) {
    cli::cli_abort("{.arg truth} has missing values; remove those cells first.", call = call, class = "cellpredx_error")
  }
  as.character(truth)
}

#' Plot the CellPredX embedding as a UMAP
#'
#' Runs UMAP (uwot) on the embedding of the query (64 dimensions per network) and colours
#' cells by predicted type, most probable type, confidence or open-set score.
#'
#' @param object A [TransferLabels()] result or the Seurat / SingleCellExperiment
#'   query it annotated.
#' @param color.by `"type"` (the predicted label, `"Unknown"` included),
#'   `"best.type"` (each cell's most probable type, whatever its confidence),
#'   `"confidence"` (the highest type probability) or `"novelty"` (the open-set
#'   score: high for cells unlike the reference).
#' @param n.neighbors,min.dist UMAP settings.
#' @param seed Seed of the UMAP layout (the session's random state is left as it was).
#' @return A ggplot.
#' @examples
#' # See vignette("rna-to-atac", package = "CellPredX").
#' @export
PlotEmbedding <- function(object, color.by = c("type", "best.type", "confidence", "novelty"), n.neighbors = 30,
                          min.dist = 0.3, seed = 0) {
  color.by <- rlang::arg_match(color.by)
  annotation <- annotation_of(object)
  if (nrow(annotation$embedding) < 3) {
    cli::cli_abort("{.fn PlotEmbedding} lays out cells with UMAP, which needs at least 3 cells; {.arg object} has {nrow(annotation$embedding)}.",
                   call = rlang::current_env(), class = c("cellpredx_error_invalid_input", "cellpredx_error"))
  }
  layout <- with_seed(seed, uwot::umap(annotation$embedding, n_neighbors = min(n.neighbors, nrow(annotation$embedding) - 1),
                                       min_dist = min.dist, n_threads = 1))
  p <- annotation$predictions
  value <- switch(color.by, type = p$predicted.id, best.type = p$best.type, confidence = p$prediction.score.max, novelty = p$novelty)
  legend <- c(type = "Predicted type", best.type = "Most probable type", confidence = "Confidence", novelty = "Novelty")[[color.by]]
  data <- data.frame(UMAP_1 = layout[, 1], UMAP_2 = layout[, 2], value = value)
  ggplot2::ggplot(data, ggplot2::aes(.data$UMAP_1, .data$UMAP_2, colour = .data$value)) +
    ggplot2::geom_point(size = 0.6, alpha = 0.8) +
    ggplot2::labs(x = "UMAP 1", y = "UMAP 2", colour = legend, title = "CellPredX embedding") +
    ggplot2::theme_minimal() +
    (if (is.numeric(value)) ggplot2::scale_colour_viridis_c()
     else ggplot2::guides(colour = ggplot2::guide_legend(override.aes = list(size = 3))))
}

# Runs `expr` with the random seed `seed` and puts the caller's random state back.
with_seed <- function(seed, expr) {
  old <- if (exists(".Random.seed", envir = globalenv())) get(".Random.seed", envir = globalenv()) else NULL
  on.exit(if (is.null(old)) rm(".Random.seed", envir = globalenv()) else assign(".Random.seed", old, envir = globalenv()))
  set.seed(seed)
  expr
}

#' Plot the confidence of the predictions per type
#'
#' The distribution of each cell's highest type probability, per most
#' probable type, with a confidence threshold as a dashed line (the one the
#' labels used with `unknown = "threshold"`, else the paper's 0.95 for
#' reference): types whose cells sit below it are the ones the reference
#' explains poorly.
#'
#' @inheritParams PlotEmbedding
#' @param threshold The threshold to draw (default: the one the labels were made with).
#' @return A ggplot.
#' @examples
#' # See vignette("rna-to-atac", package = "CellPredX").
#' @export
PlotConfidence <- function(object, threshold = NULL) {
  annotation <- annotation_of(object)
  threshold <- threshold %||% annotation$threshold
  data <- annotation$predictions
  # A violin needs two cells; types with one show as a point only.
  sizes <- table(data$best.type)
  violins <- data[data$best.type %in% names(sizes)[sizes >= 2], , drop = FALSE]
  ggplot2::ggplot(data, ggplot2::aes(.data$best.type, .data$prediction.score.max)) +
    ggplot2::geom_violin(data = violins, scale = "width", fill = "grey85", colour = "grey40") +
    ggplot2::geom_jitter(width = 0.15, height = 0, size = 0.3, alpha = 0.4) +
    ggplot2::geom_hline(yintercept = threshold, linetype = "dashed", colour = "firebrick") +
    ggplot2::labs(x = "Most probable type", y = "Confidence (highest probability)",
                  title = "Prediction confidence",
                  subtitle = if (identical(annotation$unknown, "threshold")) sprintf("Unknown below %.2f", threshold)
                             else sprintf("Dashed: confidence %.2f (the labels' Unknown rule is %s)", threshold, annotation$unknown)) +
    ggplot2::theme_minimal() +
    ggplot2::theme(axis.text.x = ggplot2::element_text(angle = 45, hjust = 1))
}

#' Plot predicted against true types
#'
#' A heatmap of the fraction of each true type's cells given each predicted
#' type, with the counts written in, for evaluating a transfer on labelled data.
#'
#' @inheritParams PlotEmbedding
#' @param truth The true type of each query cell: a vector, or the name of a
#'   metadata / `colData` column of `object`.
#' @param label What is plotted against the truth: `"best.type"`, each cell's
#'   most probable type (what [EvaluateLabels()] scores as `accuracy`), or
#'   `"predicted.id"`, the label after the Unknown call (Unknown gets its own
#'   column; [EvaluateLabels()]' `label_accuracy`).
#' @param map Optional renaming of predicted types, as in [EvaluateLabels()].
#' @return A ggplot; its title gives the accuracy [EvaluateLabels()] reports for
#'   the same object, truth and `map`, and names what it scores.
#' @examples
#' # See vignette("rna-to-rna", package = "CellPredX").
#' @export
PlotConfusion <- function(object, truth, label = c("best.type", "predicted.id"), map = NULL) {
  call <- rlang::current_env()
  label <- rlang::arg_match(label)
  annotation <- annotation_of(object)
  truth <- true_labels(object, truth, nrow(annotation$predictions), call)
  predicted <- rename_types(annotation$predictions[[label]], map)
  counts <- as.data.frame(table(truth = truth, predicted = predicted), stringsAsFactors = FALSE)
  counts$fraction <- counts$Freq / stats::ave(counts$Freq, counts$truth, FUN = sum)
  shared <- any(truth %in% rename_types(annotation$classes, map))
  scores <- if (shared) EvaluateLabels(object, truth, map = map)
  title <- if (!shared) {
    "No true type is a reference type: nothing scored (rename types with `map`)"
  } else if (label == "best.type") {
    sprintf("Most probable type: accuracy %.3f on %d cells of shared types", scores$accuracy, scores$scored_cells)
  } else {
    sprintf("Labels: accuracy %.3f on %d cells of shared types, %.1f%% of them Unknown", scores$label_accuracy,
            scores$scored_cells, 100 * scores$unknown_shared)
  }
  ggplot2::ggplot(counts, ggplot2::aes(.data$predicted, .data$truth, fill = .data$fraction)) +
    ggplot2::geom_tile() +
    ggplot2::geom_text(ggplot2::aes(label = ifelse(.data$Freq > 0, .data$Freq, "")), size = 3) +
    ggplot2::scale_fill_gradient(low = "white", high = "steelblue", limits = c(0, 1)) +
    ggplot2::labs(x = if (label == "best.type") "Most probable type" else "Label (predicted.id)", y = "True",
                  fill = "Fraction\nof true type", title = title) +
    ggplot2::theme_minimal() +
    ggplot2::theme(axis.text.x = ggplot2::element_text(angle = 45, hjust = 1))
}

#' Plot each type's determinant genes
#'
#' A dot plot of the first `n` determinant genes of every type: dot size is
#' the fraction of the type's cells with the gene among their top features,
#' colour its mean attribution.
#'
#' @param determinants The result of [DeterminantGenes()].
#' @param n Genes per type.
#' @param ranking Which ranking to show.
#' @param types Types to show (default all).
#' @return A ggplot.
#' @examples
#' # See vignette("determinant-genes", package = "CellPredX").
#' @export
PlotDeterminants <- function(determinants, n = 5, ranking = c("frequency", "mean_attribution"), types = NULL) {
  call <- rlang::current_env()
  ranking <- rlang::arg_match(ranking)
  if (!inherits(determinants, "CellPredXDeterminants")) {
    cli::cli_abort("{.arg determinants} must come from {.fn DeterminantGenes}.", call = call, class = "cellpredx_error")
  }
  check_count(n, call = call)
  data <- as.data.frame(determinants[determinants$ranking == ranking & determinants$rank <= n, , drop = FALSE])
  if (!is.null(types)) data <- data[data$cell_type %in% types, , drop = FALSE]
  if (nrow(data) == 0) {
    cli::cli_abort("No determinant genes to plot for {.arg types} = {.val {types}}.", call = call, class = "cellpredx_error")
  }
  type_order <- unique(data$cell_type)
  data$cell_type <- factor(data$cell_type, levels = type_order)
  data$gene <- factor(data$gene, levels = rev(unique(data$gene[order(data$cell_type, data$rank)])))
  ggplot2::ggplot(data, ggplot2::aes(.data$cell_type, .data$gene)) +
    ggplot2::geom_point(ggplot2::aes(size = .data$frequency, colour = .data$mean_attribution)) +
    ggplot2::scale_colour_viridis_c() +
    ggplot2::scale_size_area(max_size = 6, limits = c(0, 1)) +
    ggplot2::labs(x = "Predicted type", y = NULL, size = "Fraction of cells\nwith gene in top list",
                  colour = "Mean\nattribution", title = "Determinant genes") +
    ggplot2::theme_minimal() +
    ggplot2::theme(axis.text.x = ggplot2::element_text(angle = 45, hjust = 1))
}
