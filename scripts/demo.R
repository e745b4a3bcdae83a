# `make demo`: loads the installed package and shows what it runs on. Label transfer on the
# shipped SNARE-seq subset joins here once TransferLabels() exists.
suppressPackageStartupMessages(library(CellPredX))
cli::cli_h1("CellPredX demo")
print(CellPredXInfo())
cli::cli_alert_info("Installed in {.path {system.file(package = 'CellPredX')}}, using libtorch from {.path {system('tools/find-libtorch.sh', intern = TRUE)}}")
set.seed(1)
cells <- 20000
embedding <- matrix(rnorm(cells * 30), cells, 30)
cli::cli_alert("Query neighbour graph on {cells} random cells x 30 dimensions (k = 10):")
elapsed <- system.time(graph <- CellPredX:::query_neighbours(embedding, k = 10))[["elapsed"]]
cli::cli_alert_success("done in {round(elapsed, 1)} s; cell 1's nearest: {paste(graph$neighbours[1, 1:3], collapse = ', ')}")
