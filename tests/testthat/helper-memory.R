# Peak resident memory (MB) used by `expr` beyond what the process held before it: the kernel's
# high-water mark is reset first (Linux /proc/self/clear_refs), so Rust and libtorch allocations
# count too, not only R's.
peak_memory_mb <- function(expr) {
  status_kb <- function(field) {
    line <- grep(paste0("^", field, ":"), readLines("/proc/self/status"), value = TRUE)
    as.numeric(sub("[^0-9]*([0-9]+).*", "\\1", line))
  }
  gc(full = TRUE)
  writeLines("5", "/proc/self/clear_refs")
  before <- status_kb("VmRSS")
  force(expr)
  (status_kb("VmHWM") - before) / 1024
}

skip_if_no_proc_memory <- function() {
  ok <- file.exists("/proc/self/status") &&
    tryCatch({ writeLines("5", "/proc/self/clear_refs"); TRUE }, error = function(e) FALSE, warning = function(w) FALSE)
  skip_if_not(ok, "needs Linux /proc/self/clear_refs to measure peak memory")
}
