# What the scripts that run tools on the pairs share: the CellPredX CLI, the arguments that give
# it (or any tool taking directories) a pair, running a process under /usr/bin/time -v, the
# predictions.tsv format and the one scorer, `cellpredx evaluate`, used for every tool.
# Sourced after bench/common.R: source("bench/common.R"); source("bench/harness.R").

target_dir <- Sys.getenv("CELLPREDX_TARGET_DIR", file.path(root, "target"))
cli <- file.path(target_dir, "release", "cellpredx")
require_cli <- function() {
  if (!file.exists(cli)) stop(cli, " is missing: build it with `scripts/with-env cargo build --release --locked -p cellpredx-cli` (make bench does)")
}

# Runs `command args` with stdout and stderr into `log`; stops with the log's tail on failure.
run_logged <- function(command, args, log, what = basename(command)) {
  status <- system2(command, args, stdout = log, stderr = log)
  if (status != 0) {
    tail_lines <- utils::tail(readLines(log, warn = FALSE), 30)
    stop(what, " failed (status ", status, "):\n", paste(tail_lines, collapse = "\n"), call. = FALSE)
  }
  invisible(log)
}

# Runs a whole process under /usr/bin/time -v and returns its wall seconds and peak resident
# memory (MB) as the kernel saw them, so every tool is measured the same way: start-up, reading
# the data, fitting and predicting. Failure: an error carrying the log's tail.
timed_process <- function(command, args, log, what = basename(command)) {
  if (!file.exists("/usr/bin/time")) stop("/usr/bin/time is missing: apt-get install time (scripts/setup does)")
  time_file <- paste0(log, ".time")
  run_logged("/usr/bin/time", c("-v", "-o", shQuote(time_file), shQuote(command), args), log, what)
  lines <- readLines(time_file)
  field <- function(name) sub(".*: ", "", grep(name, lines, value = TRUE, fixed = TRUE)[1])
  wall <- as.numeric(rev(strsplit(field("Elapsed (wall clock) time"), ":", fixed = TRUE)[[1]]))
  list(seconds = sum(wall * c(1, 60, 3600)[seq_along(wall)]),
       peak_rss_mb = as.numeric(field("Maximum resident set size (kbytes)")) / 1024)
}

# Writes `x` one per line into `dir` and returns the file's path.
write_lines_in <- function(dir, x, name) {
  path <- file.path(dir, name)
  writeLines(x, path)
  path
}

# The reference / query arguments every directory-reading tool takes for a pair (the CLI's
# `transfer` and bench/peers/celltypist.py): directories plus the files listing the cells used.
pair_data_args <- function(pair_id, work) {
  pair <- bench_pairs[[pair_id]]
  args <- c("--ref", pair$ref, "--query", pair$query)
  if (!is.null(pair$ref_cells)) args <- c(args, "--ref-cells", write_lines_in(work, pair$ref_cells, paste0(pair_id, "-ref.txt")))
  if (!is.null(pair$query_cells)) args <- c(args, "--query-cells", write_lines_in(work, pair$query_cells, paste0(pair_id, "-query.txt")))
  args
}

# predictions.tsv as `cellpredx transfer` writes it and `cellpredx evaluate` reads it: cell,
# label, best_type, confidence, log_doubt and novelty (for a peer both hold its open-set score:
# larger = more likely a type the reference lacks; only its order matters to AUROC and OSCR) and one `p:<type>` column per reference type (evaluate
# takes the reference's types from these names). `scores` is cells x types.
write_predictions <- function(path, cells, best_type, confidence, doubt, scores) {
  stopifnot(length(cells) == nrow(scores), length(best_type) == length(cells))
  table <- data.frame(cell = cells, label = best_type, best_type = best_type, confidence = confidence,
                      log_doubt = doubt, novelty = doubt, check.names = FALSE)
  scores <- as.data.frame(as.matrix(scores), check.names = FALSE)
  names(scores) <- paste0("p:", colnames(scores))
  dir.create(dirname(path), showWarnings = FALSE, recursive = TRUE)
  utils::write.table(cbind(table, scores), path, sep = "\t", quote = FALSE, row.names = FALSE)
}

# Scores a predictions.tsv against the query's labels with `cellpredx evaluate` (collapsing
# types with the pair's map on P5; against the pair's collapsed `truth` file where it has one).
# Returns its JSON as a list.
evaluate_predictions <- function(pred, pair_id, work) {
  pair <- bench_pairs[[pair_id]]
  truth <- if (is.null(pair$truth)) pair$query else pair$truth
  args <- c("evaluate", "--pred", pred, "--truth", truth, "--json")
  if (!is.null(pair$map)) {
    map_file <- file.path(work, paste0(pair_id, "-map.tsv"))
    utils::write.table(pair$map, map_file, sep = "\t", quote = FALSE, row.names = FALSE)
    args <- c(args, "--map", map_file)
  }
  json <- paste0(pred, ".eval.json")
  run_logged(cli, args, json, "cellpredx evaluate")
  jsonlite::fromJSON(json)
}

# "correct/support" of one type in an evaluation (P5's CD8 T cells), or NA.
type_recall_count <- function(score, type) {
  hit <- score$per_type[score$per_type$type == type, ]
  if (nrow(hit)) sprintf("%d/%d", hit$correct, hit$support) else NA_character_
}

# Per-type recall of an evaluation as "type=recall;type=recall" (types with support only).
per_type_recall <- function(score) {
  types <- score$per_type[score$per_type$support > 0, ]
  paste(sprintf("%s=%.3f", types$type, types$recall), collapse = ";")
}

fmt <- function(x, digits = 4) if (is.null(x) || length(x) == 0 || is.na(x)) "NA" else formatC(x, digits = digits, format = "f")

# The `cellpredx transfer` arguments of one run on a pair (its preset for the pair's scenario).
cellpredx_transfer_args <- function(pair_id, work, out, seed, device = "cpu", threads = NA, extra = character()) {
  args <- c("transfer", pair_data_args(pair_id, work), "--scenario", bench_pairs[[pair_id]]$scenario,
            "--device", device, "--quiet", "--out", out, "--seed", seed, extra)
  if (!is.na(threads)) args <- c("--threads", threads, args)
  args
}

# The machine and versions behind a results file's rows (read by the report scripts).
write_machine_info <- function(path, host = Sys.info()[["nodename"]]) {
  cpu <- grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)
  version_of <- function(p) tryCatch(as.character(utils::packageVersion(p)), error = function(e) NA)
  info <- list(host = host, cpu = sub(".*:\\s*", "", cpu[1]), cores = parallel::detectCores(),
               memory_gb = round(as.numeric(gsub("[^0-9]", "", grep("^MemTotal", readLines("/proc/meminfo"), value = TRUE))) / 1024^2, 1),
               load_average_at_start = readLines("/proc/loadavg")[1], r = R.version.string, cellpredx_commit = system("git rev-parse --short HEAD", intern = TRUE),
               seurat = version_of("Seurat"), singler = version_of("SingleR"), scran = version_of("scran"))
  dir.create(dirname(path), showWarnings = FALSE, recursive = TRUE)
  jsonlite::write_json(info, path, auto_unbox = TRUE, pretty = TRUE)
}

# CellTypist's Python: list(python = path) once its virtual environment is there, else
# list(python = NULL, error = why). With install = TRUE bench/peers/celltypist-venv.sh creates the
# environment from PyPI when it is missing (minutes, once); with FALSE only an existing one is used.
setup_celltypist <- function(work, install = TRUE) {
  if (!install) {
    venv <- Sys.getenv("CELLPREDX_BENCH_VENV", file.path(Sys.getenv("HOME"), ".cellpredx", "bench-venv"))
    python <- file.path(venv, "bin", "python")
    ok <- file.exists(python) && system2(python, c("-c", shQuote("import celltypist, scipy")), stdout = FALSE, stderr = FALSE) == 0
    return(if (ok) list(python = python) else list(python = NULL, error = paste("no CellTypist environment at", venv)))
  }
  setup_log <- file.path(work, "celltypist-venv.log")
  status <- system2(file.path(root, "bench", "peers", "celltypist-venv.sh"), stdout = setup_log, stderr = setup_log)
  lines <- readLines(setup_log, warn = FALSE)
  if (status == 0) return(list(python = utils::tail(lines, 1)))
  cat(lines, sep = "\n")
  message("CellTypist could not be set up; its rows are recorded as failed")
  list(python = NULL, error = utils::tail(lines, 1))
}

# The process that runs a peer (seurat, singler, celltypist) or the centroid baseline on a pair,
# writing predictions.tsv and run.json into `out`: list(command, args).
peer_command <- function(tool, pair_id, work, out, celltypist_python = NULL, celltypist_error = "") {
  rscript <- file.path(R.home("bin"), "Rscript")
  switch(tool,
    centroid = list(command = rscript, args = c("bench/centroid.R", "--pair", pair_id, "--out", out)),
    seurat = list(command = rscript, args = c("bench/peers/seurat.R", "--pair", pair_id, "--out", out)),
    singler = list(command = rscript, args = c("bench/peers/singler.R", "--pair", pair_id, "--out", out)),
    celltypist = {
      if (is.null(celltypist_python)) stop("CellTypist's virtual environment could not be set up: ", celltypist_error, call. = FALSE)
      values <- c(pair_values(pair_id, "ref"), pair_values(pair_id, "query"))
      # run_celltypist.py takes counts or log-normalised values, the same on both sides.
      if (values[1] != values[2] || "scaled" %in% values) {
        stop("CellTypist's script takes counts or log values alike on both sides; this pair has ",
             paste(values, collapse = " -> "), call. = FALSE)
      }
      list(command = celltypist_python,
           args = c("bench/peers/run_celltypist.py", pair_data_args(pair_id, work), "--out", out,
                    if (values[1] == "log") "--log-normalised"))
    },
    stop("unknown tool ", tool, call. = FALSE))
}

# The options every runner shares: the tools to run (of `all_tools`; an unknown one stops the run),
# the seeds, the threads and the results file (bench/results/<prefix><date>-<host>.tsv).
runner_options <- function(all_tools, default_seeds, prefix = "") {
  tools <- split(option("tools", paste(all_tools, collapse = ",")))
  unknown <- setdiff(tools, all_tools)
  if (length(unknown)) stop("unknown tool(s): ", paste(unknown, collapse = ", "), "; known: ", paste(all_tools, collapse = ", "))
  host <- Sys.info()[["nodename"]]
  list(tools = tools, seeds = as.integer(split(option("seeds", default_seeds))), threads = option("threads", NA), host = host,
       out_file = option("out", file.path(root, "bench", "results", sprintf("%s%s-%s.tsv", prefix, format(Sys.Date()), host))))
}
