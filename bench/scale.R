# Scale: time and peak memory of CellPredX::TransferLabels on P1 with the query resampled to
# larger sizes (cells drawn with replacement from P1's 9,190 gene-activity cells, renamed so that
# every name is unique; the reference is unchanged). The original query is the first size.
# Each size runs in its own R process under /usr/bin/time -v, so its peak memory is its own;
# rows are appended to bench/results/scale-<YYYY-MM-DD>-<host>.tsv.
#
# Usage: Rscript bench/scale.R [--sizes 9190,100000,200000] [--seed 0] [--threads N] [--out FILE]
#   (internally: Rscript bench/scale.R --one SIZE --timing FILE runs one size)

source("bench/common.R")
source("bench/harness.R")

seed <- as.integer(option("seed", "0"))
threads <- option("threads", NA)
one_size <- option("one", NA)

if (!is.na(one_size)) {
  # One size, in this process: read P1, resample the query, time TransferLabels alone.
  size <- as.integer(one_size)
  data <- read_pair("P1")
  query <- data$query$counts
  if (size != ncol(query)) {
    set.seed(seed)
    drawn <- sample.int(ncol(query), size, replace = TRUE)
    query <- query[, drawn]
    colnames(query) <- sprintf("cell%06d_%s", seq_len(size), colnames(data$query$counts)[drawn])
  }
  started <- Sys.time()
  result <- CellPredX::TransferLabels(data$ref$counts, query, ref.labels = data$ref$meta$cell_type,
                                      scenario = bench_pairs$P1$scenario, seed = seed, device = "cpu",
                                      threads = if (is.na(threads)) NULL else as.integer(threads), verbose = FALSE)
  seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
  stopifnot(nrow(result$predictions) == size)
  writeLines(format(seconds), option("timing", stop("--timing FILE is required with --one")))
  quit(save = "no")
}

sizes <- as.integer(split(option("sizes", "9190,100000,200000")))
host <- Sys.info()[["nodename"]]
out_file <- option("out", file.path(root, "bench", "results", sprintf("scale-%s-%s.tsv", format(Sys.Date()), host)))
run_id <- format(Sys.time(), "%Y-%m-%dT%H:%M:%S")
work <- tempfile("cellpredx-scale-")
dir.create(work)
on.exit(unlink(work, recursive = TRUE), add = TRUE)

cat(sprintf("TransferLabels on P1 at query sizes %s; rows appended to %s\n", paste(sizes, collapse = ", "), out_file))
for (size in sizes) {
  timing <- file.path(work, paste0(size, ".seconds"))
  args <- c("bench/scale.R", "--one", size, "--seed", seed, "--timing", timing, if (!is.na(threads)) c("--threads", threads))
  row <- data.frame(query_cells = size, ref_cells = length(bench_pairs$P1$ref_cells), seed = seed, transfer_seconds = NA,
                    seconds = NA, peak_rss_mb = NA, status = "ok", run_id = run_id,
                    version = system("git rev-parse --short HEAD", intern = TRUE), note = "")
  error <- tryCatch({
    measured <- timed_process(file.path(R.home("bin"), "Rscript"), args, file.path(work, paste0(size, ".log")),
                              sprintf("TransferLabels at %d cells", size))
    row$transfer_seconds <- round(as.numeric(readLines(timing)), 2)
    row$seconds <- round(measured$seconds, 2)
    row$peak_rss_mb <- round(measured$peak_rss_mb, 1)
    NULL
  }, error = function(e) conditionMessage(e))
  if (!is.null(error)) {
    row$status <- "failed"
    row$note <- gsub("[\t\n]+", " | ", substr(error, 1, 500))
    message(error)
  }
  append_tsv(row, out_file)
  cat(sprintf("%7d query cells: TransferLabels %s s, process %s s, peak %s MB%s\n", size, fmt(row$transfer_seconds, 1),
              fmt(row$seconds, 1), fmt(row$peak_rss_mb, 0), if (row$status == "failed") "  FAILED" else ""))
}
