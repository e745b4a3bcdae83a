# DeterminantGenes(): the features that drove each prediction (Integrated Gradients), per cell and
# per type; KeyGeneHitRate(): how many known markers they recover.

#' Determinant genes of each predicted cell type
#'
#' Explains a fitted model's predictions with Integrated Gradients: for every
#' cell, the attribution of its predicted type's probability to each input
#' feature, integrated along the straight path from a baseline (all zeros by
#' default) to the cell in `steps` steps (trapezoid rule). Each cell keeps its
#' `top` features of largest |attribution|; each type gets two rankings of its
#' determinant features: `"frequency"` (the paper's rule: the features most
#' often among its cells' top features) and `"mean_attribution"` (the largest
#' mean attribution over its cells, i.e. the features that raise its
#' probability most).
#'
#' Attributions are in units of probability and add up, per cell, to the
#' change in the explained probability between the baseline and the cell
#' (`attr(result, "completeness")` holds both sums). Cells and path steps are
#' computed many at a time; the cost is about that of predicting the cells
#' a few times over.
#'
#' @param object A `CellPredXModel` ([TrainCellPredX()], [LoadCellPredX()]), the
#'   `CellPredXResult` of [TransferLabels()] on matrices, or a Seurat /
#'   SingleCellExperiment query annotated by [TransferLabels()] (its model and
#'   counts are used).
#' @param newdata For a model or result: the cells to explain, a features x
#'   cells matrix with feature names, as given to [TransferLabels()] or
#'   [predict()][predict.CellPredXModel].
#' @param n Determinant features reported per type and ranking.
#' @param top Features kept per cell.
#' @param steps Integration steps along the path.
#' @param target `NULL` to explain each cell's predicted type, or one type name
#'   to explain that type's probability in every cell.
#' @param baseline `NULL` (all zeros: "no signal") or one number per model
#'   feature, in the network's input units (after the model's normalisation).
#' @param cells.per.pass Cells per forward/backward pass (`NULL`: as many as
#'   fit in about 256 MB); lower it if a GPU runs out of memory.
#' @param path.space Where the path is integrated: `"embedding"` (fast: the
#'   encoder is linear, so the path through the embedding gives the same
#'   attributions) or `"input"` (the textbook computation through the whole
#'   network, as Captum does it; slower, same result within rounding).
#' @param verbose Show a progress bar.
#' @param ... Passed on to the methods.
#' @return A data frame of class `CellPredXDeterminants`, one row per type,
#'   ranking and rank: `cell_type`, `ranking`, `rank`, `gene`, `frequency`
#'   (fraction of the type's cells with the gene among their top features),
#'   `mean_attribution`, `cells` (cells explained for the type). Attributes:
#'   `cells`, the per-cell table (`cell`, `cell_type`, `rank`, `gene`,
#'   `attribution`); `completeness`, per cell the change in probability and
#'   the sum of its attributions; `features`, the model's features.
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
#' query <- simulate(3)
#' model <- TrainCellPredX(simulate(1), query, ref.labels = type, scenario = "rna_rna",
#'                         settings = list(max_steps = 100), threads = 1, verbose = FALSE)
#' determinants <- DeterminantGenes(model, query, n = 5, verbose = FALSE)
#' determinants[determinants$ranking == "frequency", ]
#' KeyGeneHitRate(determinants, list(T = c("gene1", "gene2"), B = c("gene100", "gene140")))
#' }
#' @export
DeterminantGenes <- function(object, ...) {
  UseMethod("DeterminantGenes")
}

#' @rdname DeterminantGenes
#' @export
DeterminantGenes.CellPredXModel <- function(object, newdata, n = 50, top = 100, steps = 50, target = NULL,
                                            baseline = NULL, cells.per.pass = NULL,
                                            path.space = c("embedding", "input"), verbose = TRUE, ...) {
  call <- rlang::current_env()
  if (missing(newdata)) {
    cli::cli_abort("{.arg newdata} is missing: give the cells to explain (features x cells).", call = call, class = "cellpredx_error")
  }
  determinant_genes(object, newdata, n = n, top = top, steps = steps, target = target, baseline = baseline,
                    cells_per_pass = cells.per.pass, path_space = rlang::arg_match(path.space), verbose = verbose, call = call)
}

#' @rdname DeterminantGenes
#' @export
DeterminantGenes.CellPredXResult <- function(object, newdata, ...) {
  if (is.null(object$model)) {
    cli::cli_abort("This {.cls CellPredXResult} has no model (it came from {.fn predict}); call {.fn DeterminantGenes} on the model.",
                   class = "cellpredx_error")
  }
  DeterminantGenes(object$model, newdata, ...)
}

#' @rdname DeterminantGenes
#' @export
DeterminantGenes.Seurat <- function(object, ...) {
  record <- annotation_record(SeuratObject::Misc(object, "CellPredX"), "Misc(object, \"CellPredX\")")
  counts <- seurat_counts(object, record$query$assay, record$query$layer, "object", rlang::current_env())
  DeterminantGenes(record$model, counts, ...)
}

#' @rdname DeterminantGenes
#' @export
DeterminantGenes.SingleCellExperiment <- function(object, ...) {
  record <- annotation_record(S4Vectors::metadata(object)$CellPredX, "metadata(object)$CellPredX")
  counts <- sce_counts(object, record$query$assay, "object", rlang::current_env())
  DeterminantGenes(record$model, counts, ...)
}

annotation_record <- function(record, where, call = rlang::caller_env()) {
  if (is.null(record) || is.null(record$model)) {
    cli::cli_abort(c("{.arg object} has no CellPredX model in {.code {where}}.",
                     i = "Annotate it with {.fn TransferLabels} first, or pass the model and the cells."),
                   call = call, class = "cellpredx_error")
  }
  record
}

determinant_genes <- function(model, newdata, n, top, steps, target, baseline, cells_per_pass = NULL,
                              path_space = "embedding", verbose, call) {
  newdata <- check_feature_matrix(newdata, arg = "newdata", call = call)
  check_names(newdata, "newdata", call)
  check_count(n, call = call)
  check_count(top, call = call)
  check_count(steps, call = call)
  if (!is.null(cells_per_pass)) check_count(cells_per_pass, arg = "cells.per.pass", call = call)
  classes <- model$description$classes
  features <- model$description$features
  target_index <- NULL
  if (!is.null(target)) {
    if (!is.character(target) || length(target) != 1 || !target %in% classes) {
      cli::cli_abort("{.arg target} must be {.code NULL} or one of the model's types: {.val {classes}}.", call = call, class = "cellpredx_error")
    }
    target_index <- match(target, classes)
  }
  if (!is.null(baseline) && (!is.numeric(baseline) || length(baseline) != length(features) || anyNA(baseline))) {
    cli::cli_abort("{.arg baseline} must be {.code NULL} or {length(features)} numbers (one per model feature), with no NA.",
                   call = call, class = "cellpredx_error")
  }
  raw <- call_rust(model_interpret_(model$handle, newdata, rownames(newdata), as.integer(steps),
                                    if (is.null(baseline)) NULL else as.double(baseline), target_index,
                                    as.integer(top), as.integer(n),
                                    if (is.null(cells_per_pass)) NULL else as.integer(cells_per_pass), path_space, progress_callback("CellPredX", verbose)),
                   call = call)
  cells <- colnames(newdata)
  per_type <- function(table, ranking) {
    data.frame(cell_type = classes[table$class], ranking = rep(ranking, length(table$class)), rank = table$rank,
               gene = features[table$feature], frequency = table$frequency, mean_attribution = table$mean_attribution,
               cells = table$cells, stringsAsFactors = FALSE)
  }
  result <- rbind(per_type(raw$frequency, "frequency"), per_type(raw$mean_attribution, "mean_attribution"))
  top_table <- raw$cell_top
  attr(result, "cells") <- data.frame(cell = cells[top_table$cell], cell_type = classes[raw$target[top_table$cell]],
                                      rank = top_table$rank, gene = features[top_table$feature],
                                      attribution = top_table$attribution, stringsAsFactors = FALSE)
  attr(result, "completeness") <- data.frame(cell = cells, cell_type = classes[raw$target],
                                             prediction_change = raw$prediction_change,
                                             attribution_sum = raw$attribution_sum, stringsAsFactors = FALSE)
  attr(result, "features") <- features
  class(result) <- c("CellPredXDeterminants", "data.frame")
  result
}

#' @export
print.CellPredXDeterminants <- function(x, n = 5, ...) {
  frequency <- x[x$ranking == "frequency", , drop = FALSE]
  cat(sprintf("<CellPredXDeterminants> %d types, %d cells explained\n",
              length(unique(frequency$cell_type)), nrow(attr(x, "completeness"))))
  for (type in unique(frequency$cell_type)) {
    genes <- frequency$gene[frequency$cell_type == type & frequency$rank <= n]
    cat(sprintf("  %s: %s\n", type, paste(genes, collapse = ", ")))
  }
  invisible(x)
}

# Each cell's first `n` determinant genes as one string, for a metadata column.
cell_determinant_strings <- function(determinants, cells, n = 10) {
  table <- attr(determinants, "cells")
  table <- table[table$rank <= n, , drop = FALSE]
  genes <- tapply(table$gene, factor(table$cell, levels = cells), paste, collapse = ", ")
  genes[is.na(genes)] <- ""
  unname(as.character(genes))
}

#' Key gene hit rate: known markers among the determinant genes
#'
#' For each type, the fraction of its known marker genes (those among the
#' model's features) found among its determinant genes (KGHR, as in the
#' CellPredX paper).
#'
#' @param determinants The result of [DeterminantGenes()].
#' @param markers Known markers: a named list (type -> genes) or a data frame
#'   with columns `cell_type` and `gene`.
#' @param ranking Which ranking of the determinants to score.
#' @param n Use each type's first `n` determinant genes (default: all reported).
#' @return A data frame, one row per type present in both: `cell_type`,
#'   `markers` (known markers), `in_features` (of those, among the model's
#'   features), `found`, `hit_rate` = found / in_features, `found_genes`.
#' @examples
#' # See DeterminantGenes().
#' @export
KeyGeneHitRate <- function(determinants, markers, ranking = c("frequency", "mean_attribution"), n = NULL) {
  call <- rlang::current_env()
  ranking <- rlang::arg_match(ranking)
  if (!inherits(determinants, "CellPredXDeterminants")) {
    cli::cli_abort("{.arg determinants} must come from {.fn DeterminantGenes}, not {.obj_type_friendly {determinants}}.",
                   call = call, class = "cellpredx_error")
  }
  if (is.data.frame(markers) && all(c("cell_type", "gene") %in% names(markers))) {
    markers <- split(as.character(markers$gene), as.character(markers$cell_type))
  }
  if (!is.list(markers) || is.null(names(markers)) || !all(vapply(markers, is.character, logical(1)))) {
    cli::cli_abort("{.arg markers} must be a named list of gene vectors or a data frame with columns {.field cell_type} and {.field gene}.",
                   call = call, class = "cellpredx_error")
  }
  table <- determinants[determinants$ranking == ranking, , drop = FALSE]
  if (!is.null(n)) {
    check_count(n, call = call)
    table <- table[table$rank <= n, , drop = FALSE]
  }
  types <- intersect(names(markers), unique(table$cell_type))
  if (length(types) == 0) {
    cli::cli_abort("None of the marker types ({.val {names(markers)}}) is among the explained types ({.val {unique(table$cell_type)}}).",
                   call = call, class = "cellpredx_error")
  }
  features <- attr(determinants, "features")
  rows <- lapply(types, function(type) {
    known <- unique(markers[[type]])
    usable <- intersect(known, features)
    found <- intersect(usable, table$gene[table$cell_type == type])
    data.frame(cell_type = type, markers = length(known), in_features = length(usable), found = length(found),
               hit_rate = if (length(usable)) length(found) / length(usable) else NA_real_,
               found_genes = paste(found, collapse = ", "), stringsAsFactors = FALSE)
  })
  do.call(rbind, rows)
}
