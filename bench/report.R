# Turns the bench/results/<date>-<host>.tsv files (written by bench/run.R) of the newest file's host into bench/REPORT.md,
# PNG plots under bench/report/ and the "How it compares" section of README.md (between
# <!-- compare:start --> and <!-- compare:end -->). Adds the newest scale-<date>-<host>.tsv
# (bench/scale.R) when there is one. Nothing in the report is typed by hand.
#
# Of the runs in those files (e.g. a partial re-run after a full bench, the same day or later),
# each pair and tool is taken from the newest run that has it.
#
# Usage: Rscript bench/report.R [--results FILE] [--scale FILE]

source("bench/common.R")
suppressPackageStartupMessages(library(ggplot2))

results_dir <- file.path(root, "bench", "results")
newest <- function(pattern) {
  files <- list.files(results_dir, pattern = pattern, full.names = TRUE)
  if (!length(files)) return(NA_character_)
  files[order(file.mtime(files), basename(files), decreasing = TRUE)][1]
}
results_file <- option("results", newest("^[0-9]{4}-[0-9]{2}-[0-9]{2}-.+\\.tsv$"))
if (is.na(results_file)) stop("no bench/results/<date>-<host>.tsv yet: run `make bench-quick` or `make bench` first")
scale_file <- option("scale", newest("^scale-[0-9]{4}-[0-9]{2}-[0-9]{2}-.+\\.tsv$"))
report_md <- file.path(root, "bench", "REPORT.md")
plot_dir <- file.path(root, "bench", "report")
dir.create(plot_dir, showWarnings = FALSE)

host_files <- if (is.null(option("results", NULL))) {
  host <- sub("^[0-9]{4}-[0-9]{2}-[0-9]{2}-", "", basename(results_file))
  list.files(results_dir, pattern = paste0("^[0-9]{4}-[0-9]{2}-[0-9]{2}-", gsub(".", "\\.", host, fixed = TRUE), "$"), full.names = TRUE)
} else {
  results_file
}
rows <- do.call(rbind, lapply(host_files, utils::read.delim, stringsAsFactors = FALSE, check.names = FALSE, na.strings = "NA"))
# Each pair and tool from the newest run that has it.
latest <- stats::ave(rows$run_id, rows$pair, rows$tool, FUN = function(x) max(x))
rows <- rows[rows$run_id == latest, ]
tool_order <- c("cellpredx", "seurat", "singler", "celltypist")
peers <- setdiff(tool_order, "cellpredx")
rows$tool <- factor(rows$tool, levels = intersect(tool_order, unique(rows$tool)))
ok <- rows[rows$status == "ok", ]
failed <- rows[rows$status != "ok", ]
machine_file <- sub("\\.tsv$", ".machine.json", results_file)
machine <- if (file.exists(machine_file)) jsonlite::fromJSON(machine_file) else list()
info <- function(name) if (is.null(machine[[name]])) "unknown" else as.character(machine[[name]])
date_of_run <- substr(max(rows$run_id), 1, 10)

mean_sd <- function(x, digits = 3) {
  x <- x[!is.na(x)]
  if (!length(x)) return("")
  if (length(x) == 1) return(formatC(x, digits = digits, format = "f"))
  sprintf("%s (%s)", formatC(mean(x), digits = digits, format = "f"), formatC(stats::sd(x), digits = digits, format = "f"))
}
# One line per pair and tool: means over seeds.
summary <- do.call(rbind, lapply(base::split(ok, list(ok$pair, ok$tool), drop = TRUE), function(r) {
  data.frame(pair = r$pair[1], tool = as.character(r$tool[1]), variant = paste(unique(r$variant), collapse = ","), n = nrow(r),
             accuracy = mean(r$accuracy), accuracy_sd = if (nrow(r) > 1) stats::sd(r$accuracy) else NA,
             macro_f1 = mean(r$macro_f1), macro_f1_sd = if (nrow(r) > 1) stats::sd(r$macro_f1) else NA,
             auroc = mean(r$auroc), oscr = mean(r$oscr), seconds = mean(r$seconds), peak_rss_mb = max(r$peak_rss_mb),
             accuracy_text = mean_sd(r$accuracy), macro_f1_text = mean_sd(r$macro_f1), auroc_text = mean_sd(r$auroc),
             oscr_text = mean_sd(r$oscr), cd8 = paste(unique(stats::na.omit(r$cd8_recall)), collapse = ", "))
}))
summary$tool <- factor(summary$tool, levels = levels(rows$tool))
summary <- summary[order(summary$pair, summary$tool), ]
pairs_run <- sort(unique(rows$pair))

# The plain statement for one pair: CellPredX against the best peer and against Seurat.
verdict <- function(pair_id) {
  s <- summary[summary$pair == pair_id, ]
  own <- s[s$tool == "cellpredx", ]
  others <- s[s$tool %in% peers, ]
  if (!nrow(own)) return(sprintf("**%s**: CellPredX has no successful run.", pair_id))
  if (!nrow(others)) return(sprintf("**%s**: no peer ran successfully; nothing to compare.", pair_id))
  compare <- function(metric, label) {
    best <- others[which.max(others[[metric]]), ]
    at_or_above <- own[[metric]] >= best[[metric]]
    sprintf("%s %s the best peer's (%.3f vs %s %.3f, %+.3f)", label, if (at_or_above) "is at or above" else "is BELOW",
            own[[metric]], best$tool, best[[metric]], own[[metric]] - best[[metric]])
  }
  parts <- c(compare("accuracy", "accuracy"), compare("macro_f1", "macro-F1"))
  if (!is.na(own$auroc)) {
    best <- others[which.max(others$auroc), ]
    parts <- c(parts, sprintf("AUROC %.3f vs best peer %s %.3f (%s)", own$auroc, best$tool, best$auroc,
                              if (own$auroc >= best$auroc) "at or above" else "BELOW"))
  }
  seurat <- s[s$tool == "seurat", ]
  speed <- if (nrow(seurat)) {
    sprintf("end to end %.1f s vs Seurat %.1f s (%s), peak memory %.0f MB vs %.0f MB", own$seconds, seurat$seconds,
            if (own$seconds < seurat$seconds) "faster" else "NOT faster", own$peak_rss_mb, seurat$peak_rss_mb)
  } else "Seurat did not run, no speed comparison"
  sprintf("**%s**: CellPredX %s; %s.", pair_id, paste(parts, collapse = "; "), speed)
}

pair_table <- function(pair_id) {
  s <- summary[summary$pair == pair_id, ]
  open_set <- any(!is.na(s$auroc))
  p5 <- pair_id == "P5"
  header <- c("tool", "variant", "runs", "accuracy", "macro-F1", if (open_set) c("AUROC", "OSCR"), if (p5) "CD8 T recall",
              "seconds", "peak MB")
  lines <- c(paste("|", paste(header, collapse = " | "), "|"), paste0("|", strrep("---|", length(header))))
  for (i in seq_len(nrow(s))) {
    r <- s[i, ]
    cells <- c(as.character(r$tool), r$variant, r$n, r$accuracy_text, r$macro_f1_text, if (open_set) c(r$auroc_text, r$oscr_text),
               if (p5) r$cd8, sprintf("%.1f", r$seconds), sprintf("%.0f", r$peak_rss_mb))
    lines <- c(lines, paste("|", paste(cells, collapse = " | "), "|"))
  }
  lines
}

# Plots.
save_plot <- function(plot, name, width = 8, height = 4.5) {
  ggsave(file.path(plot_dir, name), plot, width = width, height = height, dpi = 100)
  file.path("report", name)
}
scores_long <- rbind(data.frame(ok[, c("pair", "tool", "seed")], metric = "accuracy", value = ok$accuracy),
                     data.frame(ok[, c("pair", "tool", "seed")], metric = "macro-F1", value = ok$macro_f1))
accuracy_png <- save_plot(
  ggplot(scores_long, aes(pair, value, fill = tool)) +
    stat_summary(fun = mean, geom = "col", position = position_dodge(0.85), width = 0.8) +
    geom_point(position = position_dodge(0.85), size = 0.8, show.legend = FALSE) +
    facet_wrap(~metric, ncol = 1) + coord_cartesian(ylim = c(0, 1)) +
    labs(x = NULL, y = NULL, title = "Accuracy and macro-F1 on shared types (bars: mean over seeds; points: runs)") +
    theme_bw(), "accuracy.png", height = 6)
cost_long <- rbind(data.frame(ok[, c("pair", "tool")], measure = "wall seconds (whole process)", value = ok$seconds),
                   data.frame(ok[, c("pair", "tool")], measure = "peak memory, MB (whole process)", value = ok$peak_rss_mb))
cost_png <- save_plot(
  ggplot(cost_long, aes(pair, value, fill = tool)) +
    stat_summary(fun = mean, geom = "col", position = position_dodge(0.85), width = 0.8) +
    facet_wrap(~measure, ncol = 1, scales = "free_y") + scale_y_log10() +
    labs(x = NULL, y = NULL, title = "Time and peak memory by tool (log scale)") + theme_bw(), "cost.png", height = 6)

# Scale results.
fmt_num <- function(x, digits) ifelse(is.na(x), "NA", formatC(x, digits = digits, format = "f"))
scale_lines <- character()
scale_rows <- NULL
if (!is.na(scale_file)) {
  scale_rows <- utils::read.delim(scale_file, stringsAsFactors = FALSE)
  scale_rows <- scale_rows[scale_rows$run_id == max(scale_rows$run_id), ]
  scale_lines <- c("", "## Scale: `TransferLabels` on P1's query resampled", "",
                   sprintf("From `%s` (bench/scale.R; query cells drawn with replacement from P1's 9,190, reference unchanged; each size in its own process).", basename(scale_file)),
                   "", "| query cells | TransferLabels seconds | process seconds | peak MB | status |", "|---|---|---|---|---|",
                   sprintf("| %s | %s | %s | %s | %s |", format(scale_rows$query_cells, big.mark = ","), fmt_num(scale_rows$transfer_seconds, 1),
                           fmt_num(scale_rows$seconds, 1), fmt_num(scale_rows$peak_rss_mb, 0), scale_rows$status))
  ok_scale <- scale_rows[scale_rows$status == "ok", ]
  if (nrow(ok_scale) > 1) {
    scale_png <- save_plot(
      ggplot(ok_scale, aes(query_cells, transfer_seconds)) + geom_line() + geom_point() +
        geom_text(aes(label = sprintf("%.0f MB", peak_rss_mb)), vjust = -0.8, size = 3) +
        labs(x = "query cells", y = "TransferLabels seconds", title = "Scale: time (labels: peak memory)") + theme_bw(),
      "scale.png", height = 4)
    scale_lines <- c(scale_lines, "", sprintf("![scale](%s)", scale_png))
  }
}

report <- c(
  "# CellPredX against its peers", "",
  "Generated by `bench/report.R` from the files named below; do not edit by hand (run `make bench` or `make bench-quick`).", "",
  sprintf("- Results: `bench/results/%s` (run %s)", basename(results_file), max(rows$run_id)),
  sprintf("- Machine: %s, %s, %s cores, %s GB memory; /proc/loadavg when the run started: %s", info("host"), info("cpu"),
          info("cores"), info("memory_gb"), info("load_average_at_start")),
  sprintf("- Versions: %s; CellPredX commit %s; Seurat %s; SingleR %s (scran %s); CellTypist %s", info("r"), info("cellpredx_commit"),
          info("seurat"), info("singler"), info("scran"),
          paste(unique(stats::na.omit(rows$version[rows$tool == "celltypist"])), collapse = ", ")),
  sprintf("- Pairs in this run: %s (%s)", paste(pairs_run, collapse = ", "),
          if (all(paste0("P", 1:6) %in% pairs_run)) "the full benchmark" else "a subset: not the full benchmark"),
  "",
  "Every tool runs as its own process, timed by `/usr/bin/time -v` (seconds and peak memory of the whole process: start-up, reading, fitting, predicting), and every tool's predictions are scored by the same `cellpredx evaluate`: accuracy and macro-F1 over the query cells whose type the reference has (each cell's most probable type, no threshold); AUROC and OSCR of the tool's confidence at telling novel types apart (P4, P6). Mean (sd) over CellPredX's seeds; the peers run once (deterministic).",
  "",
  "## Verdict per pair", "",
  vapply(pairs_run, verdict, character(1)), "",
  sprintf("![accuracy and macro-F1](%s)", accuracy_png), "", sprintf("![time and memory](%s)", cost_png), "",
  unlist(lapply(pairs_run, function(p) c(sprintf("## %s", p), "", pair_table(p), ""))),
  if (nrow(failed)) c("## Failed runs", "", sprintf("- %s %s seed %s: %s", failed$pair, failed$tool, failed$seed, failed$note), "") else character(),
  scale_lines
)
writeLines(report, report_md)
cat("wrote", report_md, "and", accuracy_png, cost_png, "\n")
cat(vapply(pairs_run, verdict, character(1)), sep = "\n")

# README: a short summary between the markers.
readme_file <- file.path(root, "README.md")
readme <- readLines(readme_file)
start <- grep("<!-- compare:start -->", readme, fixed = TRUE)
end <- grep("<!-- compare:end -->", readme, fixed = TRUE)
if (length(start) != 1 || length(end) != 1 || end < start) stop("README.md needs one <!-- compare:start --> ... <!-- compare:end --> block")
own <- summary[summary$tool == "cellpredx", ]
short <- vapply(pairs_run, function(p) {
  s <- summary[summary$pair == p, ]
  o <- s[s$tool == "cellpredx", ]
  others <- s[s$tool %in% peers, ]
  if (!nrow(o) || !nrow(others)) return(sprintf("| %s | | | |", p))
  b_acc <- others[which.max(others$accuracy), ]
  b_f1 <- others[which.max(others$macro_f1), ]
  seurat <- s[s$tool == "seurat", ]
  sprintf("| %s | %.3f / %.3f | %.3f (%s) / %.3f (%s) | %s |", p, o$accuracy, o$macro_f1, b_acc$accuracy, b_acc$tool,
          b_f1$macro_f1, b_f1$tool,
          if (nrow(seurat)) sprintf("%.0f s vs %.0f s", o$seconds, seurat$seconds) else "")
}, character(1))
section <- c(
  sprintf("Measured on %s on %s (%s cores; %s), pairs %s, by `make bench%s`; generated from the newest results, see [bench/REPORT.md](bench/REPORT.md) for every figure, the spread over seeds, AUROC/OSCR and the plots.",
          date_of_run, info("host"), info("cores"), info("cpu"), paste(pairs_run, collapse = ", "),
          if (all(paste0("P", 1:6) %in% pairs_run)) "" else "-quick"),
  "", "| pair | CellPredX accuracy / macro-F1 | best peer accuracy / macro-F1 | CellPredX vs Seurat, wall time |", "|---|---|---|---|",
  short)
writeLines(c(readme[seq_len(start)], section, readme[end:length(readme)]), readme_file)
cat("updated README.md's How it compares section\n")
