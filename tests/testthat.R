library(testthat)
library(CellPredX)

test_check("CellPredX")
