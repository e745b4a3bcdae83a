test_that("R/extendr-wrappers.R matches the Rust entry points (run `make wrappers` if not)", {
  generated <- new.env()
  eval(parse(text = CellPredX:::extendr_wrappers_text()), envir = generated)
  ns <- asNamespace("CellPredX")
  expect_gt(length(ls(generated)), 0)
  for (name in ls(generated)) {
    expect_true(exists(name, envir = ns, inherits = FALSE), info = name)
    expect_identical(deparse(get(name, ns)), deparse(get(name, generated)), info = name)
  }
})
