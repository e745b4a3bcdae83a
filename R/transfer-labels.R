# TransferLabels(): the method on matrices, Seurat and SingleCellExperiment objects.

transfer_scenarios <- c("rna_atac_matched", "rna_atac_unmatched", "atac_atac", "rna_rna")

# The rules that call cells Unknown (`unknown` in TransferLabels(), predict()); the core's
# `UnknownRule` names them the same way.
unknown_rules <- c("calibrated", "threshold", "none")

#' Transfer cell type labels from an annotated reference to a query
#'
#' Trains the CellPredX network (a shared encoder and classifier fitted with
#' cross-entropy, projection regularisation, feature alignment, neighbourhood
#' contrastive and sparse center losses) on the labelled reference and the
#' unlabelled query, then predicts a type for every query cell. The query's own
#' labels, if it has any, are never read.
#'
#' @param ref The annotated reference: a features x cells matrix (`dgCMatrix` or
#'   numeric), a `Seurat` object or a `SingleCellExperiment`.
#' @param query The cells to annotate, of the same kind as `ref`.
#' @param ref.labels The reference's cell types: a vector with one label per
#'   cell, or (for objects) the name of a metadata / `colData` column. For a
#'   Seurat reference, `NULL` takes `Idents(ref)`.
#' @param scenario `"auto"` or one of `"rna_atac_matched"`, `"rna_atac_unmatched"`,
#'   `"atac_atac"`, `"rna_rna"`: which preset of loss weights and preprocessing
#'   to use. `"auto"` reads it from the assays (RNA, gene activity, peaks) and
#'   whether the two sides share cell names; for plain matrices it recognises
#'   peaks by their names and otherwise asks you to say.
#' @param unknown Which cells are called `"Unknown"` in `predicted.id`:
#'   `"calibrated"` (the default) calls a cell Unknown when its open-set score
#'   `novelty` lies beyond a cut-off calibrated on the query's own scores: their
#'   median plus 3 (setting `unknown_scale`) robust standard deviations of their
#'   lower half, so that on data without novel types few cells are rejected
#'   (0-4 % of known cells on the benchmark pairs) while cells far from every
#'   reference type are; the cut-off is kept in the model for new cells.
#'   `"threshold"` is the paper's rule: confidence (the highest type
#'   probability) below `threshold`. `"none"` labels every cell. Cells without
#'   counts are Unknown under every rule. Each cell's most probable type is
#'   always in `best.type`.
#' @param threshold With `unknown = "threshold"`: the confidence below which a
#'   cell is called `"Unknown"`.
#' @param seed Seed of the run; the same seed and `threads` give the same
#'   result on a CPU.
#'   Where a query cell carries little evidence of its own (RNA to ATAC, and
#'   panels of at most 500 features such as proteins), the transfer trains
#'   three networks with seeds `seed`, `seed + 1`, `seed + 2` and averages
#'   their predictions, which makes the calls steadier and more accurate than
#'   one network's; elsewhere it trains one. `settings = list(networks = n)`
#'   sets the number. On a CPU the networks train side by side, each on its
#'   share of the threads: on two cores one network takes about half the time
#'   of three.
#' @param device `"auto"` (a CUDA GPU when libtorch sees one), `"cpu"` or `"cuda"`.
#' @param threads Compute threads (default: `getOption("cellpredx.threads")`,
#'   else the number of physical cores).
#' @param verbose Show progress bars and a summary line.
#' @param settings A named list overriding any preset setting, e.g.
#'   `list(max_steps = 1000, contrastive_weight = 0.5)`; see [CellPredXPresets()].
#' @param interpret Also compute each type's determinant genes with
#'   [DeterminantGenes()] (default settings) and each cell's top genes.
#' @param ... Passed on to the methods.
#' @return For matrices, a `CellPredXResult`: a list with `predictions` (a data
#'   frame, one row per query cell: `predicted.id`, `prediction.score.max`,
#'   `best.type`, `log.doubt` = ln(1 - max probability) of each network's
#'   classifier before smoothing, averaged over the networks (it equals
#'   `log(1 - prediction.score.max)` only for one network without smoothing),
#'   `prototype.similarity`
#'   = cosine similarity to the nearest type's mean reference embedding,
#'   `reference.distance` = mean distance in the embedding to the 10 nearest
#'   reference cells, and `novelty`, the open-set score [EvaluateLabels()] uses:
#'   `reference.distance` averaged over each cell's neighbourhood in the query,
#'   higher for cells of types the reference lacks). Query cells with no value
#'   above zero in the shared features carry no evidence: they take no part in
#'   training, are always `"Unknown"`, and get equal probabilities for every
#'   type (so `log.doubt` = ln(1 - 1/K) for K types), a zero embedding and
#'   `prototype.similarity`, and the largest `reference.distance` and
#'   `novelty` of the other cells. A query with no such cell at all is an
#'   error,
#'   `probabilities` (types x cells), `embedding` (cells x 64 per network: the
#'   networks' embeddings side by side), `history` (every loss at every step of
#'   every network), `recoveries` (one row per time a network's loss diverged:
#'   the step, the loss, the step training went back to and the halved learning
#'   rate; no rows when none did), `networks` (each network's seed, steps, why its
#'   training stopped and its recoveries), the settings used, `determinants` (with
#'   `interpret = TRUE`, see [DeterminantGenes()]) and `model`, a `CellPredXModel`
#'   that annotates further cells with [predict()][predict.CellPredXModel]. For objects, the query with the results written in
#'   (see the methods).
#' @examples
#' \donttest{
#' # Two cell types, 150 genes; the query is another "protocol" with a shifted depth.
#' set.seed(1)
#' type <- rep(c("T", "B"), each = 100)
#' simulate <- function(depth) {
#'   rate <- outer(rep(c(2, 0.2), each = 75), type == "T", function(a, t) ifelse(t, a, 2.2 - a))
#'   x <- matrix(rpois(length(rate), depth * rate), nrow(rate),
#'               dimnames = list(paste0("gene", 1:150), paste0("cell", seq_along(type))))
#'   Matrix::Matrix(x, sparse = TRUE)
#' }
#' result <- TransferLabels(simulate(1), simulate(3), ref.labels = type, scenario = "rna_rna",
#'                          settings = list(max_steps = 100), threads = 1)
#' result
#' table(result$predictions$best.type, type)
#' }
#' @export
TransferLabels <- function(ref, query, ...) {
  UseMethod("TransferLabels")
}

#' @rdname TransferLabels
#' @export
TransferLabels.default <- function(ref, query, ref.labels, scenario = "auto", unknown = c("calibrated", "threshold", "none"),
                                   threshold = 0.95, seed = 0,
                                   device = c("auto", "cpu", "cuda"), threads = NULL, verbose = TRUE,
                                   settings = list(), interpret = FALSE, ...) {
  call <- rlang::current_env()
  ref <- check_feature_matrix(ref, call = call)
  query <- check_feature_matrix(query, call = call)
  if (missing(ref.labels)) {
    cli::cli_abort("{.arg ref.labels} is missing: give one cell type per reference cell.", call = call, class = "cellpredx_error")
  }
  scenario <- resolve_scenario(scenario, rownames(ref), rownames(query), colnames(ref), colnames(query), call = call)
  run_transfer(ref, ref.labels, query, scenario = scenario, unknown = unknown, threshold = threshold, seed = seed,
               device = rlang::arg_match(device, error_call = call), threads = threads, verbose = verbose,
               settings = settings, interpret = interpret, call = call)
}

# Everything the methods share: checks, the call into Rust, and the results as R objects.
run_transfer <- function(ref, labels, query, scenario, unknown, threshold, seed, device, threads, verbose, settings,
                         interpret = FALSE, call) {
  check_names(ref, "ref", call)
  check_names(query, "query", call)
  if (ncol(query) == 0) {
    cli::cli_abort("{.arg query} has no cells.", call = call, class = "cellpredx_error")
  }
  if (length(labels) != ncol(ref)) {
    cli::cli_abort("{.arg ref.labels} has {length(labels)} label{?s} for {ncol(ref)} reference cell{?s}; give one per cell.",
                   call = call, class = "cellpredx_error")
  }
  unknown <- rlang::arg_match(unknown, unknown_rules, error_call = call)
  check_threshold(threshold, call = call)
  check_count(seed, min = 0, call = call)
  check_flag(interpret, call = call)
  if (!is.list(settings) || (length(settings) && (is.null(names(settings)) || any(names(settings) == "")))) {
    cli::cli_abort("{.arg settings} must be a named list, e.g. {.code list(max_steps = 1000)}.", call = call, class = "cellpredx_error")
  }
  labels <- if (is.factor(labels)) droplevels(labels) else as.character(labels)
  if (anyNA(labels) || any(labels == "")) {
    bad <- which(is.na(labels) | labels == "")
    cli::cli_abort("{.arg ref.labels} has {length(bad)} missing or empty label{?s} (the first at cell {bad[1]}); remove those cells or label them.",
                   call = call, class = "cellpredx_error")
  }
  check_text(as.character(labels), arg = "ref.labels", call = call)
  if (length(unique(labels)) < 2) {
    cli::cli_abort("{.arg ref.labels} has a single cell type ({.val {unique(labels)}}); a transfer needs at least two.",
                   call = call, class = "cellpredx_error")
  }
  if ("Unknown" %in% labels) {
    cli::cli_abort(c(
      "{.arg ref.labels} has a type named {.val Unknown}, the name CellPredX gives the cells it rejects.",
      "i" = "Rename it, e.g. {.code labels[labels == \"Unknown\"] <- \"Unknown (reference)\"}, so that the two can be told apart."
    ), call = call, class = c("cellpredx_error_invalid_input", "cellpredx_error"))
  }
  warn_case_only_matches(rownames(ref), rownames(query), call)
  if (identical(scenario, "rna_rna") && is.null(settings$normalization) && is.null(settings$preprocess$normalization)) {
    warn_normalization_mismatch(ref, query, call)
  }
  counts <- table(labels)
  if (any(counts == 1)) {
    cli::cli_warn("Reference type{?s} {.val {names(counts)[counts == 1]}} ha{?s/ve} a single cell: too few to learn from reliably.",
                  call = call)
  }
  apply_threads(threads, call = call)
  settings$seed <- seed
  settings$threshold <- threshold
  settings$unknown <- unknown
  started <- Sys.time()
  status <- function(metrics) {
    text <- if ("loss" %in% names(metrics)) sprintf("loss %.3f", metrics[["loss"]]) else ""
    if ("recoveries" %in% names(metrics)) text <- sprintf("%s (recovered %d\u00d7 from a diverging loss)", text, as.integer(metrics[["recoveries"]]))
    text
  }
  progress <- progress_callback("CellPredX", verbose, status = status)
  raw <- call_rust(transfer_(ref, rownames(ref), labels, query, rownames(query),
                             scenario, jsonlite::toJSON(settings, auto_unbox = TRUE, digits = NA),
                             device, progress), call = call)
  result <- transfer_result(raw, colnames(query), scenario, as.numeric(difftime(Sys.time(), started, units = "secs")))
  if (isTRUE(verbose)) {
    for (i in seq_len(nrow(result$recoveries))) {
      r <- result$recoveries[i, ]
      cli::cli_alert_warning(paste0(
        "Network {r$network}: the loss diverged at step {r$step} ({format(r$loss)}); training went back to step ",
        "{r$resumed_from} and halved the learning rate ({r$learning_rate} -> {r$new_learning_rate})."
      ))
    }
    unknown_share <- round(100 * mean(result$predictions$predicted.id == "Unknown"), 1)
    cli::cli_alert_success(paste0(
      "{ncol(query)} query cells, {length(result$classes)} types, {length(result$features)} features, ",
      "{scenario}, {networks_summary(result$networks)} on {result$device}, {round(result$seconds, 1)} s; ",
      "{unknown_share}% Unknown ({unknown_rule_summary(result$model$description)})"
    ))
    if (unknown_share > 50) {
      cli::cli_alert_info(paste0(
        "Most cells are called Unknown; each cell's most probable type is kept as {.field best.type} ",
        "({.field predicted.best.type} in objects). Choose another rule with {.arg unknown} to call more cells."
      ))
    }
  }
  if (interpret) {
    result$determinants <- determinant_genes(result$model, query, n = 50, top = 100, steps = 50, target = NULL,
                                             baseline = NULL, verbose = verbose, call = call)
  }
  result
}

# Features that match only when case is ignored ("cd3e" against "CD3E") are left out of the
# match; when they are many, the user almost certainly meant them to match.
warn_case_only_matches <- function(ref_features, query_features, call) {
  exact <- sum(query_features %in% ref_features)
  unmatched <- query_features[!query_features %in% ref_features]
  case_only <- unmatched[toupper(unmatched) %in% toupper(ref_features)]
  if (length(case_only) >= max(10, 0.05 * exact)) {
    example <- case_only[[1]]
    ref_example <- ref_features[match(toupper(example), toupper(ref_features))]
    cli::cli_warn(c(
      "{length(case_only)} {.arg query} feature{?s} match{?es/} {.arg ref} features only when case is ignored (e.g. {.val {example}} and {.val {ref_example}}); {?it is/they are} left out.",
      "i" = "Make the names agree first, e.g. {.code rownames(query) <- toupper(rownames(query))} (only {exact} feature{?s} match exactly)."
    ), call = call, class = "cellpredx_warning_feature_case")
  }
}

# Whether every stored value is a whole number (raw counts) rather than normalised data.
holds_counts <- function(x) {
  values <- stored_values(x)
  all(values == round(values), na.rm = TRUE)
}

# With `normalization = "auto"`, counts are log-normalised and anything else is taken as already
# normalised: a side of counts beside a side of other values only works when that side was
# normalised the same way, which the values cannot show. Say so rather than let most cells turn
# Unknown.
warn_normalization_mismatch <- function(ref, query, call) {
  kinds <- c(ref = holds_counts(ref), query = holds_counts(query))
  if (kinds[["ref"]] == kinds[["query"]]) return(invisible())
  counts_side <- names(kinds)[kinds]
  other_side <- names(kinds)[!kinds]
  values <- stored_values(if (other_side == "ref") ref else query)
  example <- format(values[which(values != round(values))[1]], digits = 4)
  cli::cli_warn(c(
    "{.arg {counts_side}} holds counts (whole numbers) but {.arg {other_side}} does not (e.g. {example}).",
    "i" = "The counts are log-normalised (to 10,000 per cell, then log1p) and {.arg {other_side}} is taken as already normalised: results are only right if it was normalised exactly that way.",
    "i" = "Give both sides as raw counts, or both normalised the same way, or set {.code settings = list(normalization = \"none\")} (or another method) for both."
  ), call = call, class = "cellpredx_warning_normalization")
}

# "3 networks of 1000 steps", "1 network of 1000 steps (center loss converged)", ...
networks_summary <- function(networks) {
  steps <- unique(networks$steps)
  stops <- networks$stop[networks$stop != "max_steps"]
  sprintf("%d network%s of %s steps%s", nrow(networks), if (nrow(networks) == 1) "" else "s",
          paste(steps, collapse = "/"), if (length(stops)) sprintf(" (%d stopped early: center loss converged)", length(stops)) else "")
}

transfer_result <- function(raw, cells, scenario, seconds) {
  result <- prediction_result(raw$predictions, cells)
  result$history <- as.data.frame(lapply(raw$history, function(x) vapply(x, function(v) if (is.null(v)) NA_real_ else v, numeric(1))))
  result$recoveries <- as.data.frame(raw$recoveries)
  result$features <- raw$features
  result$scenario <- scenario
  result$settings <- jsonlite::fromJSON(raw$settings)
  result$normalization <- jsonlite::fromJSON(raw$normalization)
  result$scaled <- raw$scaled
  result$smoothing <- raw$smoothing
  result$networks <- jsonlite::fromJSON(raw$networks)
  result$device <- raw$device
  result$seconds <- seconds
  result$model <- new_model(raw$model, raw$description)
  result
}

# Predictions from the core as R objects: a data frame per cell, probabilities, embedding.
# How the labels call Unknown, for messages: "calibrated: novelty above 4.21".
unknown_rule_summary <- function(description) {
  switch(description$unknown,
         calibrated = sprintf("calibrated: novelty above %.3g", description$novelty_cutoff),
         threshold = sprintf("threshold: confidence below %.2f", description$threshold),
         none = "none: every cell with counts labelled")
}

prediction_result <- function(raw, cells) {
  probabilities <- raw$probabilities
  dimnames(probabilities) <- list(raw$classes, cells)
  best <- max.col(t(probabilities), ties.method = "first")
  confidence <- probabilities[cbind(best, seq_along(best))]
  best_type <- raw$classes[best]
  predictions <- data.frame(
    predicted.id = raw$labels,
    prediction.score.max = confidence,
    best.type = best_type,
    log.doubt = raw$log_doubt,
    prototype.similarity = raw$prototype_similarity,
    reference.distance = raw$reference_distance,
    novelty = raw$novelty,
    row.names = cells, stringsAsFactors = FALSE
  )
  embedding <- raw$embedding
  dimnames(embedding) <- list(cells, paste0("CellPredX_", seq_len(ncol(embedding))))
  structure(list(predictions = predictions, probabilities = probabilities, embedding = embedding,
                 classes = raw$classes), class = "CellPredXResult")
}

#' @export
print.CellPredXResult <- function(x, ...) {
  cat(sprintf("<CellPredXResult> %d cells, %d types\n", nrow(x$predictions), length(x$classes)))
  if (!is.null(x$history)) {
    cat(sprintf("  trained %s on %s in %.1f s\n", networks_summary(x$networks), x$device, x$seconds))
  }
  cat(sprintf("  %.1f%% Unknown\n", 100 * mean(x$predictions$predicted.id == "Unknown")))
  counts <- sort(table(x$predictions$predicted.id), decreasing = TRUE)
  cat("  predicted:", paste(sprintf("%s %d", names(counts), as.integer(counts)), collapse = ", "), "\n")
  invisible(x)
}

check_names <- function(x, arg, call) {
  for (what in c("features", "cells")) {
    names <- if (what == "features") rownames(x) else colnames(x)
    if (is.null(names)) {
      cli::cli_abort("{.arg {arg}} has no {what} names ({if (what == 'features') 'rownames' else 'colnames'}); CellPredX matches features by name.",
                     call = call, class = "cellpredx_error")
    }
    check_text(names, arg = sprintf("%s's %s names", arg, if (what == "features") "feature" else "cell"), call = call)
    dup <- anyDuplicated(names)
    if (dup) {
      cli::cli_abort("{.arg {arg}} has duplicated {what} names (e.g. {.val {names[dup]}}); make them unique first, e.g. with {.fn make.unique}.",
                     call = call, class = "cellpredx_error")
    }
  }
}

peak_pattern <- "^(chr)?[0-9A-Za-z]+[-:_][0-9]+[-_][0-9]+$"

looks_like_peaks <- function(features) {
  length(features) > 0 && mean(grepl(peak_pattern, utils::head(features, 1000))) > 0.9
}

# "auto" from what is known of both sides: peaks on both → atac_atac; otherwise the caller must
# know whether the query is gene activity (`query_kind`).
resolve_scenario <- function(scenario, ref_features, query_features, ref_cells, query_cells,
                             ref_kind = NULL, query_kind = NULL, call) {
  if (!is.character(scenario) || length(scenario) != 1 || !scenario %in% c("auto", transfer_scenarios)) {
    cli::cli_abort("{.arg scenario} must be {.val auto} or one of {.or {.val {transfer_scenarios}}}, not {.val {scenario}}.",
                   call = call, class = "cellpredx_error")
  }
  if (scenario != "auto") return(scenario)
  ref_kind <- ref_kind %||% if (looks_like_peaks(ref_features)) "peaks" else NA
  query_kind <- query_kind %||% if (looks_like_peaks(query_features)) "peaks" else NA
  if (identical(ref_kind, "peaks") && identical(query_kind, "peaks")) return("atac_atac")
  if (identical(ref_kind, "rna") && identical(query_kind, "rna")) return("rna_rna")
  if (identical(ref_kind, "rna") && identical(query_kind, "activity")) {
    shared <- mean(query_cells %in% ref_cells)
    return(if (shared > 0.5) "rna_atac_matched" else "rna_atac_unmatched")
  }
  cli::cli_abort(c("{.arg scenario} = {.val auto} cannot tell what these data are.",
                   i = "Say which: {.or {.val {transfer_scenarios}}}."), call = call, class = "cellpredx_error")
}

`%||%` <- function(a, b) if (is.null(a)) b else a

#' The preset settings of a scenario
#'
#' Every setting [TransferLabels()] accepts in `settings`, with the value the
#' scenario's preset gives it.
#'
#' @param scenario One of `"rna_atac_matched"`, `"rna_atac_unmatched"`,
#'   `"atac_atac"`, `"rna_rna"`.
#' @return A list with `preprocess` and `training` settings, `threshold` and
#'   `smoothing`: the share of each cell's type probabilities taken from its
#'   neighbours in the embedding (each weighed by its similarity to the cell),
#'   in each of three rounds; `NULL` (automatic) gives 0.5 for the RNA to ATAC
#'   scenarios, 0.8 for panels of at most 500 features (e.g. proteins), 0
#'   otherwise; `networks`, how many networks are
#'   trained (with consecutive seeds) and averaged: `NULL` (automatic) gives 3
#'   where the smoothing is automatically on, 1 otherwise; `prior_correction`,
#'   the share (0 to 1) of the tilt toward small types that drawing reference
#'   cells with `training$class_balance` gives the classifier which prediction
#'   takes back, moving it toward the reference's composition (1 restores it
#'   exactly): `NULL` (automatic) gives 0.5 for `rna_atac_matched`, whose query
#'   is the reference's own cells, 0 otherwise. Two more settings
#'   are `NULL` (automatic) because they depend on the data as well as the
#'   scenario: `training$contrastive_weight` gives 1.2 for RNA to ATAC, 0.1 for
#'   `atac_atac`, 0.5 for `rna_rna` and 0.8 for `rna_rna` panels of at most 500
#'   features; `preprocess$graph_metric` gives `"manhattan"` where the
#'   smoothing is automatically on and `"cosine"` elsewhere.
#'   `training$max_epochs` (350) ends training early on small datasets: it
#'   stops after `max_steps` steps or after that many passes over the larger
#'   side's cells, whichever comes first (a result's settings show the steps
#'   that ran); a huge value leaves `max_steps` alone in charge.
#'   `preprocess$normalization` is one of `"auto"` (counts get `"lognormalize"`,
#'   other values are taken as they are), `"lognormalize"`, `"clr"`, `"log1p"`,
#'   `"binarize"` or `"none"`, as on the command line. A result's
#'   `settings` hold the values its transfer used, every automatic one
#'   resolved.
#' @examples
#' str(CellPredXPresets("rna_rna")$training)
#' @export
CellPredXPresets <- function(scenario = transfer_scenarios) {
  scenario <- rlang::arg_match(scenario)
  jsonlite::fromJSON(call_rust(transfer_preset_(scenario)))
}

#' @rdname TransferLabels
#' @param ref.assay,query.assay Assays to read (Seurat: default the active assay;
#'   SingleCellExperiment: the assay name, default `"counts"`). For a Signac-style
#'   Seurat query whose active assay holds peaks (`peaks`, `ATAC`) and a reference
#'   with RNA, `NULL` takes the query's gene-activity assay (`ACTIVITY`,
#'   `GeneActivity`, ...); make one with [GeneActivity()] if it has none.
#' @param layer The layer (Seurat v5) or slot (v4) holding raw counts.
#' @param prefix Prefix of the metadata columns written into the query.
#' @details The Seurat method writes metadata columns `<prefix>.id` (the type,
#'   or `"Unknown"` as `unknown` decides), `<prefix>.best.type` (the most probable
#'   type, whatever its confidence), `prediction.score.max` and
#'   `<prefix>.novelty` (the open-set score), an assay
#'   `prediction.scores.cellpredx` with every type's probability (features are
#'   types, with `_` written as `-` since Seurat feature names cannot hold `_`;
#'   `Misc(query, "CellPredX")$score.names` maps each assay row to its type), a dimensional reduction
#'   `cellpredx` (the embedding) and `Misc(query, "CellPredX")`: the model, the
#'   training history, the settings, the features used, the open-set scores, the
#'   Unknown rule with its novelty cut-off (`unknown`) and,
#'   with `interpret = TRUE`, the determinant genes (`determinants`); each
#'   cell's first 10 determinant genes then go into the metadata column
#'   `<prefix>.determinants`. The
#'   SingleCellExperiment method writes the same columns into `colData`, the
#'   embedding as `reducedDim(query, "CellPredX")` and the rest, with the
#'   probability matrix, into `metadata(query)$CellPredX`. On error the query
#'   is returned unchanged (nothing is written before the transfer succeeds).
#'   For SingleR users: `<prefix>.best.type` plays the part of SingleR's
#'   `labels` and `<prefix>.id` that of `pruned.labels` (with `"Unknown"` where
#'   SingleR has `NA`).
#' @export
TransferLabels.Seurat <- function(ref, query, ref.labels = NULL, ref.assay = NULL, query.assay = NULL,
                                  layer = "counts", scenario = "auto", unknown = c("calibrated", "threshold", "none"),
                                  threshold = 0.95, seed = 0,
                                  device = c("auto", "cpu", "cuda"), threads = NULL, verbose = TRUE,
                                  settings = list(), prefix = "predicted", interpret = FALSE, ...) {
  call <- rlang::current_env()
  if (!inherits(query, "Seurat")) {
    cli::cli_abort("{.arg query} must be a Seurat object like {.arg ref}, not {.obj_type_friendly {query}}.", call = call, class = "cellpredx_error")
  }
  ref.assay <- ref.assay %||% SeuratObject::DefaultAssay(ref)
  query.assay <- query.assay %||% default_query_assay(query, ref.assay, verbose, call)
  ref_counts <- seurat_counts(ref, ref.assay, layer, "ref", call)
  query_counts <- seurat_counts(query, query.assay, layer, "query", call)
  labels <- metadata_labels(ref.labels, ref[[]], ncol(ref), default = SeuratObject::Idents(ref), call = call)
  scenario <- resolve_scenario(scenario, rownames(ref_counts), rownames(query_counts), colnames(ref), colnames(query),
                               ref_kind = assay_kind(ref.assay), query_kind = assay_kind(query.assay), call = call)
  result <- run_transfer(ref_counts, labels, query_counts, scenario = scenario, unknown = unknown, threshold = threshold, seed = seed,
                         device = rlang::arg_match(device, error_call = call), threads = threads, verbose = verbose,
                         settings = settings, interpret = interpret, call = call)
  columns <- annotation_column_names(prefix)
  for (field in names(columns)) {
    query[[columns[[field]]]] <- result$predictions[[field]]
  }
  # Seurat feature names cannot hold "_" (it would rename them with a warning): the types are
  # renamed here, and the mapping is kept so that each assay row can be traced to its type.
  probabilities <- result$probabilities
  score_names <- stats::setNames(rownames(probabilities), make.unique(gsub("_", "-", rownames(probabilities), fixed = TRUE)))
  rownames(probabilities) <- names(score_names)
  scores <- SeuratObject::CreateAssayObject(data = probabilities)
  SeuratObject::Key(scores) <- "predictionscorescellpredx_"
  query[["prediction.scores.cellpredx"]] <- scores
  query[["cellpredx"]] <- SeuratObject::CreateDimReducObject(embeddings = result$embedding, key = "CellPredX_",
                                                             assay = query.assay)
  if (interpret) {
    query[[paste0(prefix, ".determinants")]] <- cell_determinant_strings(result$determinants, colnames(query))
  }
  record <- result_record(result, prefix, list(assay = query.assay, layer = layer))
  record$score.names <- score_names
  SeuratObject::Misc(query, "CellPredX") <- record
  query
}

#' @rdname TransferLabels
#' @export
TransferLabels.SingleCellExperiment <- function(ref, query, ref.labels, ref.assay = "counts", query.assay = "counts",
                                                scenario = "auto", unknown = c("calibrated", "threshold", "none"),
                                                threshold = 0.95, seed = 0,
                                                device = c("auto", "cpu", "cuda"), threads = NULL, verbose = TRUE,
                                                settings = list(), prefix = "predicted", interpret = FALSE, ...) {
  call <- rlang::current_env()
  if (!methods::is(query, "SingleCellExperiment")) {
    cli::cli_abort("{.arg query} must be a SingleCellExperiment like {.arg ref}, not {.obj_type_friendly {query}}.", call = call, class = "cellpredx_error")
  }
  if (missing(ref.labels)) {
    cli::cli_abort("{.arg ref.labels} is missing: give a {.code colData(ref)} column name or one label per cell.", call = call, class = "cellpredx_error")
  }
  ref_counts <- sce_counts(ref, ref.assay, "ref", call)
  query_counts <- sce_counts(query, query.assay, "query", call)
  labels <- metadata_labels(ref.labels, as.data.frame(SummarizedExperiment::colData(ref)), ncol(ref), call = call)
  scenario <- resolve_scenario(scenario, rownames(ref_counts), rownames(query_counts), colnames(ref), colnames(query),
                               ref_kind = sce_kind(ref, ref.assay, rownames(ref_counts)),
                               query_kind = sce_kind(query, query.assay, rownames(query_counts)), call = call)
  result <- run_transfer(ref_counts, labels, query_counts, scenario = scenario, unknown = unknown, threshold = threshold, seed = seed,
                         device = rlang::arg_match(device, error_call = call), threads = threads, verbose = verbose,
                         settings = settings, interpret = interpret, call = call)
  columns <- annotation_column_names(prefix)
  for (field in names(columns)) {
    SummarizedExperiment::colData(query)[[columns[[field]]]] <- result$predictions[[field]]
  }
  SingleCellExperiment::reducedDim(query, "CellPredX") <- result$embedding
  if (interpret) {
    SummarizedExperiment::colData(query)[[paste0(prefix, ".determinants")]] <-
      cell_determinant_strings(result$determinants, colnames(query))
  }
  record <- result_record(result, prefix, list(assay = query.assay))
  record$probabilities <- result$probabilities
  S4Vectors::metadata(query)$CellPredX <- record
  query
}

# Where the object methods write per-cell results into the query's metadata: prediction column ->
# metadata column.
annotation_column_names <- function(prefix) {
  c(predicted.id = paste0(prefix, ".id"), best.type = paste0(prefix, ".best.type"),
    prediction.score.max = "prediction.score.max", novelty = paste0(prefix, ".novelty"))
}

# What the object methods keep beside the columns: enough to see how the labels were made.
result_record <- function(result, prefix, query) {
  description <- result$model$description
  list(model = result$model, prefix = prefix, query = query, determinants = result$determinants,
       unknown = list(rule = description$unknown, novelty_cutoff = description$novelty_cutoff,
                      threshold = description$threshold, unknown_scale = description$unknown_scale),
       history = result$history, recoveries = result$recoveries, settings = result$settings, scenario = result$scenario,
       features = result$features, classes = result$classes,
       open_set = result$predictions[c("log.doubt", "prototype.similarity", "reference.distance")],
       normalization = result$normalization, scaled = result$scaled, smoothing = result$smoothing, networks = result$networks,
       device = result$device, seconds = result$seconds,
       version = as.character(utils::packageVersion("CellPredX")))
}

# The active assay, except for a Signac-style query whose active assay holds peaks when the
# reference has RNA: then its gene-activity assay.
default_query_assay <- function(query, ref_assay, verbose, call) {
  assay <- SeuratObject::DefaultAssay(query)
  if (!identical(assay_kind(ref_assay), "rna") || !identical(assay_kind(assay), "peaks")) {
    return(assay)
  }
  activity <- Filter(function(a) identical(assay_kind(a), "activity"), SeuratObject::Assays(query))
  if (length(activity) == 0) {
    cli::cli_abort(c("{.arg query}'s active assay {.val {assay}} holds peaks, and the reference {.val {ref_assay}} holds genes.",
                     i = "Add gene activity first, e.g. {.code query <- GeneActivity(query, annotation = \"hg38\")}, or name the assay with {.arg query.assay}."),
                   call = call, class = "cellpredx_error")
  }
  if (isTRUE(verbose)) {
    cli::cli_inform("Using the query's gene-activity assay {.val {activity[[1]]}} (its active assay {.val {assay}} holds peaks).")
  }
  activity[[1]]
}

# What a SingleCellExperiment's assay holds, as the Seurat method reads it from the assay's name:
# the assay name first (e.g. "gene_activity"), then the main experiment's name ("RNA", "peaks",
# "Gene Expression"), and otherwise gene features (not peak regions) are RNA.
sce_kind <- function(object, assay, features) {
  main <- SingleCellExperiment::mainExpName(object)
  kind <- assay_kind(assay) %||% (if (!is.null(main)) assay_kind(main)) %||%
    (if (!is.null(main) && grepl("^gene expression$", main, ignore.case = TRUE)) "rna")
  kind %||% if (looks_like_peaks(features)) "peaks" else "rna"
}

assay_kind <- function(assay) {
  if (grepl("^(peaks?|atac)$", assay, ignore.case = TRUE)) return("peaks")
  if (grepl("activit|^gam$|^gene_?activity", assay, ignore.case = TRUE)) return("activity")
  if (grepl("^(rna|sct|integrated)$", assay, ignore.case = TRUE)) return("rna")
  NULL
}

seurat_counts <- function(object, assay, layer, arg, call) {
  if (!assay %in% SeuratObject::Assays(object)) {
    cli::cli_abort("{.arg {arg}} has no assay {.val {assay}}; its assays are {.val {SeuratObject::Assays(object)}}.",
                   call = call, class = "cellpredx_error")
  }
  counts <- if (utils::packageVersion("SeuratObject") >= "5.0.0") {
    # Looked up at run time: SeuratObject 4, which R CMD check sees here, has no LayerData().
    layer_data <- getExportedValue("SeuratObject", "LayerData")
    layer_data(object, assay = assay, layer = layer)
  } else {
    SeuratObject::GetAssayData(object, assay = assay, slot = layer)
  }
  if (is.null(counts) || length(counts) == 0 || nrow(counts) == 0) {
    cli::cli_abort("The {.val {layer}} layer of assay {.val {assay}} in {.arg {arg}} is empty; give the layer that holds the counts.",
                   call = call, class = "cellpredx_error")
  }
  check_feature_matrix(counts, arg = arg, call = call)
}

sce_counts <- function(object, assay, arg, call) {
  if (!assay %in% SummarizedExperiment::assayNames(object)) {
    cli::cli_abort("{.arg {arg}} has no assay {.val {assay}}; its assays are {.val {SummarizedExperiment::assayNames(object)}}.",
                   call = call, class = "cellpredx_error")
  }
  check_feature_matrix(SummarizedExperiment::assay(object, assay), arg = arg, call = call)
}

# Labels from a column name of `meta` (the metadata of `owner`, n cells), a vector, or the
# default (Seurat identities); `arg` names the argument in errors.
metadata_labels <- function(labels, meta, n, default = NULL, arg = "ref.labels", owner = "the reference", call) {
  if (is.null(labels)) {
    if (is.null(default)) {
      cli::cli_abort("{.arg {arg}} is missing.", call = call, class = "cellpredx_error")
    }
    return(default)
  }
  if (is.character(labels) && length(labels) == 1 && n != 1) {
    if (!labels %in% names(meta)) {
      cli::cli_abort(c("{.arg {arg}}: {owner} has no metadata column {.val {labels}}.",
                       i = "Its columns are {.val {names(meta)}}; give a column name or one label per cell."),
                     call = call, class = "cellpredx_error")
    }
    return(meta[[labels]])
  }
  labels
}
