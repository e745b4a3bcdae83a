# CellPredX: `make demo` sets up a fresh machine and runs the main job; `make test` runs every test.
# Each target runs scripts/setup first, which skips what is already done and reinstalls the
# package incrementally (seconds once the first build is done).
.PHONY: setup install demo test test-rust test-r check bench wrappers document clean

WITH_ENV := scripts/with-env

setup:
	@scripts/setup

demo: setup
	@$(WITH_ENV) Rscript scripts/demo.R

test: setup
	@$(MAKE) --no-print-directory test-rust test-r

test-rust:
	@echo "==> cargo test --workspace"
	@$(WITH_ENV) cargo test --workspace --release --locked

test-r:
	@echo "==> R tests (testthat)"
	@$(WITH_ENV) Rscript scripts/run-r-tests.R

check: setup
	@echo "==> R CMD build + R CMD check"
	@rm -rf target/check && mkdir -p target/check
	@$(WITH_ENV) sh -c 'cd target/check && R CMD build --no-build-vignettes ../.. && _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual CellPredX_*.tar.gz'
	@scripts/check-log target/check/CellPredX.Rcheck/00check.log

bench: setup
	@$(WITH_ENV) cargo build --release --locked -p cellpredx-cli
	@$(WITH_ENV) Rscript bench/threads.R
	@$(WITH_ENV) Rscript bench/pairs.R $(BENCH_ARGS)
	@$(WITH_ENV) Rscript bench/pairs.R --pairs P1,P2,P3,P4 --variants no_fa,no_cl,no_sc,no_pr,sc_raw $(BENCH_ARGS)

# Regenerates R/extendr-wrappers.R and the roxygen docs after a change to the Rust entry points.
wrappers: setup
	@Rscript -e 'writeLines(CellPredX:::extendr_wrappers_text(), "R/extendr-wrappers.R")'
	@$(MAKE) --no-print-directory document

document:
	@Rscript -e 'roxygen2::roxygenise(load_code = roxygen2::load_installed)'

clean:
	rm -rf target src/rust/target src/Makevars src/*.o src/*.so
