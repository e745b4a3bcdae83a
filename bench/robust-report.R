# Turns bench/results/robust-<date>-<host>.tsv (bench/robust.R) into bench/ROBUST.md and prints
# its headline: per pair of the wider benchmark, CellPredX's accuracy / macro-F1 with the spread
# over seeds, the worst swing of a type's recall between seeds, the diverged / recovered runs, the
# in-sample and leave-one-pair-out (LOPO) choice among the candidate settings and their figures,
# and each peer's figure. Nothing in it is typed by hand.
#
# Candidate choice. A candidate's score on a pair is its mean macro-F1 over seeds, a diverged or
# failed run counting 0 (a setting that breaks on a pair must pay for it). Macro-F1 because
# accuracy hides small types (P5's CD8 T cells). The in-sample choice is the candidate of best mean
# score over all pairs where every candidate ran; the LOPO choice for a pair is the best over the
# other pairs only, then scored on the held-out pair. Ties go to the candidate listed first.
#
# Of the rows in the file(s), each pair / tool / candidate / seed is taken from its newest run.
#
# Usage: Rscript bench/robust-report.R [--results FILE[,FILE...]] [--out bench/ROBUST.md]

source("bench/common.R")

results_dir <- file.path(root, "bench", "results")
newest_robust <- function() {
  files <- list.files(results_dir, pattern = "^robust-[0-9]{4}-[0-9]{2}-[0-9]{2}-.+\\.tsv$", full.names = TRUE)
  if (!length(files)) stop("no bench/results/robust-<date>-<host>.tsv yet: run bench/robust.R (make bench-robust) first")
  files[order(file.mtime(files), basename(files), decreasing = TRUE)][1]
}
results_files <- split(option("results", newest_robust()))
out_md <- option("out", file.path(root, "bench", "ROBUST.md"))

rows <- do.call(rbind, lapply(results_files, utils::read.delim, stringsAsFactors = FALSE, check.names = FALSE,
                              na.strings = "NA"))
rows$candidate[is.na(rows$candidate)] <- ""
rows$flags[is.na(rows$flags)] <- ""
key <- paste(rows$pair, rows$tool, rows$candidate, rows$seed)
rows <- rows[rows$run_id == stats::ave(rows$run_id, key, FUN = max), ]
pairs <- intersect(wide_pair_ids, unique(rows$pair))
finished <- c("ok", "recovered")
own <- rows[rows$tool == "cellpredx", ]
candidates <- unique(own$candidate)  # in the order the runs first listed them
peers <- intersect(c("centroid", "singler", "seurat", "celltypist"), unique(rows$tool))

f3 <- function(x) ifelse(is.na(x), "NA", formatC(x, digits = 3, format = "f"))
mean_or_na <- function(x) if (all(is.na(x))) NA_real_ else mean(x, na.rm = TRUE)
sd_or_na <- function(x) if (sum(!is.na(x)) < 2) NA_real_ else stats::sd(x, na.rm = TRUE)
mean_sd <- function(x) {
  x <- x[!is.na(x)]
  if (!length(x)) return("—")
  if (length(x) == 1) return(f3(x))
  sprintf("%s ± %s", f3(mean(x)), f3(stats::sd(x)))
}

# "type=recall;type=recall" (harness.R's per_type_recall) -> named numeric.
parse_recall <- function(text) {
  if (is.na(text) || !nzchar(text)) return(numeric())
  parts <- strsplit(strsplit(text, ";", fixed = TRUE)[[1]], "=", fixed = TRUE)
  stats::setNames(as.numeric(vapply(parts, `[`, "", 2)), vapply(parts, `[`, "", 1))
}
# The type whose recall moves most between finished runs, and by how much (max - min).
worst_swing <- function(r) {
  recalls <- lapply(r$per_type_recall[r$status %in% finished], parse_recall)
  if (length(recalls) < 2) return(list(type = NA_character_, swing = NA_real_))
  types <- unique(unlist(lapply(recalls, names)))
  swing <- vapply(types, function(t) {
    v <- vapply(recalls, function(x) if (t %in% names(x)) x[[t]] else NA_real_, numeric(1))
    diff(range(v, na.rm = TRUE))
  }, numeric(1))
  list(type = types[which.max(swing)], swing = max(swing))
}

# One line per pair and candidate.
summarise_runs <- function(r) {
  done <- r[r$status %in% finished, ]
  swing <- worst_swing(r)
  data.frame(runs = nrow(r), ok = sum(r$status == "ok"), recovered = sum(r$status == "recovered"),
             diverged = sum(r$status == "diverged"), failed = sum(r$status == "failed"),
             accuracy = mean_or_na(done$accuracy), accuracy_sd = sd_or_na(done$accuracy),
             macro_f1 = mean_or_na(done$macro_f1), macro_f1_sd = sd_or_na(done$macro_f1), auroc = mean_or_na(done$auroc),
             accuracy_text = mean_sd(done$accuracy), macro_f1_text = mean_sd(done$macro_f1), auroc_text = mean_sd(done$auroc),
             swing_type = swing$type, swing = swing$swing,
             # The choice's score: a run that did not finish counts 0.
             score = mean(ifelse(r$status %in% finished, r$macro_f1, 0)), seconds = mean_or_na(done$seconds))
}
by_candidate <- do.call(rbind, lapply(base::split(own, list(own$pair, own$candidate), drop = TRUE), function(r) {
  cbind(data.frame(pair = r$pair[1], candidate = r$candidate[1]), summarise_runs(r))
}))

# In-sample and LOPO choices among the candidates, on the pairs where every candidate ran.
scores <- if (is.null(by_candidate)) matrix(numeric(), 0, 0) else
  tapply(by_candidate$score, list(by_candidate$pair, factor(by_candidate$candidate, levels = candidates)), mean)
eligible <- rownames(scores)[stats::complete.cases(scores)]
choose <- function(on) {
  if (!length(on)) return(NA_character_)
  means <- colMeans(scores[on, , drop = FALSE])
  candidates[which.max(means)]  # which.max takes the first of equal means
}
in_sample_choice <- choose(eligible)
lopo_choice <- stats::setNames(vapply(eligible, function(p) choose(setdiff(eligible, p)), ""), eligible)
figure <- function(pair_id, candidate) {
  hit <- by_candidate[by_candidate$pair == pair_id & by_candidate$candidate == candidate, ]
  if (is.na(candidate) || !nrow(hit)) return("—")
  broken <- hit$runs - hit$ok - hit$recovered
  sprintf("%s / %s%s", f3(hit$accuracy), f3(hit$macro_f1), if (broken) sprintf(" (%d of %d runs did not finish)", broken, hit$runs) else "")
}
single_candidate <- length(candidates) == 1

# The defaults' line per pair: the candidate named "defaults", else the first listed.
default_candidate <- if ("defaults" %in% candidates) "defaults" else candidates[1]
peer_summary <- do.call(rbind, lapply(base::split(rows[rows$tool %in% peers, ], list(rows$pair[rows$tool %in% peers],
                                                                                      rows$tool[rows$tool %in% peers]), drop = TRUE),
                                      function(r) cbind(data.frame(pair = r$pair[1], tool = r$tool[1], status = r$status[1],
                                                                   note = r$note[1]), summarise_runs(r))))
if (is.null(peer_summary)) peer_summary <- data.frame(pair = character(), tool = character(), status = character(), macro_f1 = numeric())
peer_cell <- function(pair_id, tool) {
  hit <- peer_summary[peer_summary$pair == pair_id & peer_summary$tool == tool, ]
  if (!nrow(hit)) return("—")
  if (!hit$status %in% finished) return(hit$status)
  sprintf("%s / %s%s", f3(hit$accuracy), f3(hit$macro_f1), if (is.na(hit$auroc)) "" else sprintf(" (AUROC %s)", f3(hit$auroc)))
}
title <- function(pair_id) {
  t <- bench_pairs[[pair_id]]$title
  if (is.null(t)) paste(pair_id, "of BENCHMARKS.md") else t
}
sample_of <- function(pair_id) if (pair_id %in% in_sample_pairs) "in" else "out"

robustness_table <- function() {
  header <- c("pair", "sample", "what", "CellPredX accuracy", "macro-F1", "AUROC", "runs: ok / recovered / diverged / failed",
              "worst recall swing between seeds", "s a run")
  lines <- c(paste("|", paste(header, collapse = " | "), "|"), paste0("|", strrep("---|", length(header))))
  for (p in pairs) {
    d <- by_candidate[by_candidate$pair == p & by_candidate$candidate == default_candidate, ]
    cells <- if (!nrow(d)) c("—", "—", "—", "not run", "—", "—") else
      c(d$accuracy_text, d$macro_f1_text, d$auroc_text, sprintf("%d / %d / %d / %d", d$ok, d$recovered, d$diverged, d$failed),
        if (is.na(d$swing)) "—" else sprintf("%.3f (%s)", d$swing, d$swing_type), sprintf("%.1f", d$seconds))
    lines <- c(lines, paste("|", paste(c(p, sample_of(p), title(p), cells), collapse = " | "), "|"))
  }
  lines
}
peer_table <- function() {
  header <- c("pair", "sample", "CellPredX (defaults)", peers)
  lines <- c(paste("|", paste(header, collapse = " | "), "|"), paste0("|", strrep("---|", length(header))))
  for (p in pairs) {
    d <- by_candidate[by_candidate$pair == p & by_candidate$candidate == default_candidate, ]
    mine <- if (!nrow(d)) "—" else if (is.na(d$macro_f1)) sprintf("no run finished (%d diverged, %d failed)", d$diverged, d$failed) else sprintf("%s / %s%s", f3(d$accuracy), f3(d$macro_f1),
                                            if (is.na(d$auroc)) "" else sprintf(" (AUROC %s)", f3(d$auroc)))
    lines <- c(lines, paste("|", paste(c(p, sample_of(p), mine, vapply(peers, function(t) peer_cell(p, t), "")), collapse = " | "), "|"))
  }
  lines
}
choice_table <- function() {
  header <- c("pair", "in-sample choice", "its accuracy / macro-F1", "LOPO choice", "its accuracy / macro-F1")
  lines <- c(paste("|", paste(header, collapse = " | "), "|"), paste0("|", strrep("---|", length(header))))
  for (p in eligible) {
    lines <- c(lines, paste("|", paste(c(p, in_sample_choice, figure(p, in_sample_choice),
                                         if (is.na(lopo_choice[[p]])) "— (no other pair)" else lopo_choice[[p]],
                                         figure(p, lopo_choice[[p]])), collapse = " | "), "|"))
  }
  lines
}

# Headline: CellPredX's defaults against the best peer and the centroid, in and out of sample.
headline <- function(which) {
  set <- pairs[vapply(pairs, sample_of, "") == which]
  d <- by_candidate[by_candidate$candidate == default_candidate & by_candidate$pair %in% set & !is.na(by_candidate$macro_f1), ]
  d <- d[order(match(d$pair, wide_pair_ids)), ]
  if (!nrow(d)) return(sprintf("%s: no finished CellPredX run.", if (which == "in") "In sample" else "Out of sample"))
  best_peer <- vapply(d$pair, function(p) {
    s <- peer_summary[peer_summary$pair == p & peer_summary$status %in% finished, ]
    if (nrow(s)) max(s$macro_f1) else NA_real_
  }, numeric(1))
  centroid <- vapply(d$pair, function(p) {
    s <- peer_summary[peer_summary$pair == p & peer_summary$tool == "centroid" & peer_summary$status %in% finished, ]
    if (nrow(s)) s$macro_f1 else NA_real_
  }, numeric(1))
  all_own <- own[own$candidate == default_candidate & own$pair %in% set, ]
  sprintf(paste("%s (CellPredX finished a run on %d pair(s): %s): CellPredX defaults mean macro-F1 over them %s (mean seed sd %s);",
                "at or above the best peer on %d of %d pairs with a peer, below the centroid baseline on %d of %d;",
                "runs %d, diverged %d, recovered %d, failed %d."),
          if (which == "in") "In sample" else "Out of sample", nrow(d), paste(d$pair, collapse = ", "), f3(mean(d$macro_f1)),
          f3(mean(d$macro_f1_sd, na.rm = TRUE)), sum(d$macro_f1 >= best_peer, na.rm = TRUE), sum(!is.na(best_peer)),
          sum(d$macro_f1 < centroid, na.rm = TRUE), sum(!is.na(centroid)), nrow(all_own),
          sum(all_own$status == "diverged"), sum(all_own$status == "recovered"), sum(all_own$status == "failed"))
}
lopo_statement <- if (!length(candidates)) {
  "No CellPredX runs: no candidate choice."
} else if (single_candidate) {
  sprintf(paste("One candidate only (`%s`, flags \"%s\"): the LOPO choice equals the in-sample choice on every pair,",
                "so the LOPO figures are the candidate's own. The out-of-sample figures of the presets are those on the",
                "W pairs, on which nothing was tuned (the presets were chosen on P1-P6)."),
          candidates, paste(unique(own$flags[own$candidate == candidates]), collapse = ""))
} else {
  changed <- sum(lopo_choice != in_sample_choice, na.rm = TRUE)
  # Mean over the held-out pairs of each choice's score (macro-F1, unfinished runs 0).
  held_out <- eligible[!is.na(lopo_choice)]
  score_of <- function(p, c) if (is.na(c)) NA_real_ else scores[p, c]
  in_mean <- mean(vapply(held_out, function(p) score_of(p, in_sample_choice), numeric(1)))
  lopo_mean <- mean(vapply(held_out, function(p) score_of(p, lopo_choice[[p]]), numeric(1)))
  sprintf(paste("%d candidates (%s); in-sample choice over %d pairs: %s. The LOPO choice differs from it on %d of %d pairs;",
                "mean score (macro-F1, unfinished runs 0) over the %d held-out pairs: in-sample choice %s, LOPO choice %s."),
          length(candidates), paste(sprintf("`%s` = \"%s\"", candidates,
                                            vapply(candidates, function(c) paste(unique(own$flags[own$candidate == c]), collapse = ""), "")),
                                    collapse = ", "),
          length(eligible), in_sample_choice, changed, length(eligible), length(held_out), f3(in_mean), f3(lopo_mean))
}

machine_file <- sub("\\.tsv$", ".machine.json", results_files[1])
machine <- if (file.exists(machine_file)) jsonlite::fromJSON(machine_file) else list()
info <- function(name) if (is.null(machine[[name]])) "unknown" else as.character(machine[[name]])
failures <- rows[!rows$status %in% c(finished, "not_run"), ]
# Tools that could not run here: one line per tool and reason, not one per pair.
not_run <- rows[rows$status == "not_run", ]
not_run_lines <- if (nrow(not_run)) {
  groups <- unique(not_run[, c("tool", "note")])
  vapply(seq_len(nrow(groups)), function(i) {
    hit <- not_run$tool == groups$tool[i] & not_run$note == groups$note[i]
    sprintf("- %s not run on %s: %s", groups$tool[i], paste(unique(not_run$pair[hit]), collapse = ", "), groups$note[i])
  }, "")
} else character()
seeds_run <- sort(unique(own$seed))
heads <- c(headline("in"), headline("out"))

report <- c(
  "# The wider benchmark: seeds, divergence, out-of-sample figures", "",
  "Generated by `bench/robust-report.R` from the results named below; do not edit by hand (`make bench-robust`).",
  "Pairs: `bench/PAIRS.md`. \"in\" = P1-P6, on which the presets were chosen; \"out\" = W1-W16, on which nothing was tuned.", "",
  sprintf("- Results: %s (runs %s to %s)", paste(sprintf("`bench/results/%s`", basename(results_files)), collapse = ", "),
          min(rows$run_id), max(rows$run_id)),
  sprintf("- Machine: %s, %s, %s cores, %s GB; load average when the first run started: %s; CellPredX commit %s; Seurat %s, SingleR %s",
          info("host"), info("cpu"), info("cores"), info("memory_gb"), info("load_average_at_start"),
          paste(unique(stats::na.omit(own$version)), collapse = ", "), info("seurat"), info("singler")),
  sprintf("- CellPredX: CLI, candidates %s, seeds %s; pairs with CellPredX runs: %s of %d",
          paste(candidates, collapse = ", "), paste(seeds_run, collapse = ", "), length(unique(own$pair)), length(pairs)),
  "- Accuracy and macro-F1 over the query cells of shared types (most probable type, no threshold), AUROC of the open-set score where the query has novel types; every tool scored by `cellpredx evaluate`. Mean ± sd over finished seeds.", "",
  "## Headline", "", paste("-", heads), "",
  "## CellPredX over seeds", "", robustness_table(), "",
  "## Against the baseline and the peers (accuracy / macro-F1)", "", peer_table(), "",
  "## Candidate settings: in-sample and leave-one-pair-out choice", "", lopo_statement, "",
  if (length(eligible)) choice_table() else "No pair has runs of every candidate.", "",
  if (nrow(failures)) c("## Runs that did not finish", "",
                        sprintf("- %s %s%s seed %s: **%s** — %s", failures$pair, failures$tool,
                                ifelse(nzchar(failures$candidate), paste0(" ", failures$candidate), ""), failures$seed,
                                failures$status, failures$note), "") else character(),
  if (length(not_run_lines)) c("## Tools not run", "", not_run_lines, "") else character()
)
writeLines(report, out_md)
cat("wrote", out_md, "\n\n")
cat(heads, sep = "\n")
cat("\n", lopo_statement, "\n\n", sep = "")
cat(robustness_table(), sep = "\n")
cat("\n")
cat(peer_table(), sep = "\n")
if (!single_candidate && length(eligible)) cat("\n", choice_table(), sep = "\n")
