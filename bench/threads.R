# Thread settings and libtorch's OpenMP busy-waiting: milliseconds per training step of the
# CellPredX network at P1's shape (512 cells x 1,677 features, 19 types), measured in fresh
# processes, inside R and in the command-line tool, for OpenMP wait policies x thread counts.
# Prints a table and appends it to bench/results/threads-<date>-<host>.tsv.
# Run by `make bench` (which builds target/release/cellpredx first).
steps <- as.integer(Sys.getenv("CELLPREDX_BENCH_STEPS", "100"))
cli_bin <- normalizePath("target/release/cellpredx", mustWork = TRUE)
policies <- c("default", "passive", "active")
threads <- unique(c(1L, 2L, parallel::detectCores()))

env_for <- function(policy) {
  if (policy == "default") "OMP_WAIT_POLICY=" else paste0("OMP_WAIT_POLICY=", policy)
}

# Each measurement runs in its own process: OpenMP reads its wait policy once, at start-up.
time_in_r <- function(policy, n) {
  code <- sprintf("library(CellPredX); cat(CellPredX:::training_step_ms(steps = %d, threads = %d))", steps, n)
  args <- c("-u", "OMP_WAIT_POLICY", if (policy != "default") env_for(policy),
            file.path(R.home("bin"), "Rscript"), "-e", shQuote(code))
  as.numeric(tail(system2("env", args, stdout = TRUE), 1))
}
time_in_cli <- function(policy, n) {
  args <- c("-u", "OMP_WAIT_POLICY", if (policy != "default") env_for(policy),
            cli_bin, "--threads", n, "bench-step", "--steps", steps, "--device", "cpu")
  as.numeric(tail(system2("env", args, stdout = TRUE), 1))
}

rows <- list()
for (policy in policies) for (n in threads) {
  rows[[length(rows) + 1]] <- data.frame(
    host = Sys.info()[["nodename"]], date = format(Sys.time(), "%Y-%m-%d %H:%M"),
    cores = parallel::detectCores(), policy = policy, threads = n, steps = steps,
    ms_per_step_r = round(time_in_r(policy, n), 2), ms_per_step_cli = round(time_in_cli(policy, n), 2))
  print(rows[[length(rows)]][, c("policy", "threads", "ms_per_step_r", "ms_per_step_cli")], row.names = FALSE)
}
results <- do.call(rbind, rows)
cat("\nTraining step at P1's shape (ms per step; lower is better):\n")
print(results[, c("policy", "threads", "ms_per_step_r", "ms_per_step_cli")], row.names = FALSE)
dir.create("bench/results", showWarnings = FALSE)
out <- sprintf("bench/results/threads-%s-%s.tsv", format(Sys.Date()), Sys.info()[["nodename"]])
utils::write.table(results, out, sep = "\t", quote = FALSE, row.names = FALSE,
                   append = file.exists(out), col.names = !file.exists(out))
cat("written to", out, "\n")
