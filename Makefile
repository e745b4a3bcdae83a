# CellPredX: `make demo` sets up a fresh machine and runs the main job; `make test` runs every test.
# Each target runs scripts/setup first, which skips what is already done and reinstalls the
# package incrementally (seconds once the first build is done).
.PHONY: setup install demo test test-rust test-r check bench bench-quick bench-report bench-cli bench-derive bench-robust bench-robust-quick bench-robust-report wrappers document clean

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
	@$(WITH_ENV) sh -c 'cd target/check && R CMD build ../.. && _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual CellPredX_*.tar.gz'
	@scripts/check-log target/check/CellPredX.Rcheck/00check.log

# The benchmark against the peers (bench/run.R: CellPredX x 3 seeds, Seurat, SingleR, CellTypist
# on P1-P6 in one run, ~31 min on 2 cores), the scale benchmark (bench/scale.R: 9,190, 100,000 and
# 200,000 query cells, ~4 min), the speed target of one training on P1 (bench/pairs.R --variants
# single: 3 seeds, ~3 min, printed against 60 s and 1 GB), the thread timings and determinant genes, then the report
# (bench/REPORT.md, bench/report/*.png, README's "How it compares"): 38 min in all on the 2-core VM
# (2026-11-25), plus the wider benchmark's quick run (bench-robust-quick, ~18 min estimated on an
# idle 2-core VM, see bench/NOTES.md 2026-12-04): ~56 min. BENCH_ABLATION=1 adds the loss ablation (bench/pairs.R --variants ..., ~50 min
# more), off by default to stay well inside the 90-minute budget. BENCH_ARGS go to bench/run.R, e.g. BENCH_ARGS="--pairs P1,P5".
BENCH_ABLATION ?= 0
bench: setup bench-cli
	@$(WITH_ENV) Rscript bench/threads.R
	@$(WITH_ENV) Rscript bench/run.R $(BENCH_ARGS)
	@$(WITH_ENV) Rscript bench/scale.R
	@$(WITH_ENV) Rscript bench/pairs.R --pairs P1 --variants single
	@$(WITH_ENV) Rscript bench/interpret.R
	@if [ "$(BENCH_ABLATION)" = 1 ]; then $(WITH_ENV) Rscript bench/pairs.R --pairs P1,P2,P3,P4 --variants no_fa,no_cl,no_sc,no_pr,sc_raw; fi
	@$(MAKE) --no-print-directory bench-report
	@case "$(BENCH_ROBUST)" in quick) $(MAKE) --no-print-directory bench-robust-quick;; full) $(MAKE) --no-print-directory bench-robust;; esac

# The wider benchmark (bench/PAIRS.md, issue 18): bench/derive.R writes the derived pairs' data
# (git-ignored bench/cache/, seconds), bench/robust.R runs every tool on the pairs and
# bench/robust-report.R writes bench/ROBUST.md (seed spread, divergence, in-sample / LOPO choice
# among ROBUST_CANDIDATES). `make bench` runs the quick version (BENCH_ROBUST=quick, the default;
# =full runs the full one; =0 skips it). The full run is a target of its own because it is long:
# CellPredX x ROBUST_SEEDS on all 22 pairs (P1-P3 take 1.5-3 min a run) and every peer, ~1.6 h
# estimated on an idle 2-core VM (bench/NOTES.md 2026-12-04), well over make bench's budget.
BENCH_ROBUST ?= quick
ROBUST_SEEDS ?= 0,1,2,3,4
ROBUST_CANDIDATES ?= defaults=
bench-derive:
	@$(WITH_ENV) Rscript bench/derive.R

bench-robust: setup bench-cli bench-derive
	@$(WITH_ENV) Rscript bench/robust.R --pairs all --seeds $(ROBUST_SEEDS) --candidates "$(ROBUST_CANDIDATES)"
	@$(MAKE) --no-print-directory bench-robust-report

# Every tool once on the pairs of a CellPredX run under a minute (all but P1-P3): seed 0 only.
bench-robust-quick: setup bench-cli bench-derive
	@$(WITH_ENV) Rscript bench/robust.R --pairs small --seeds 0 --candidates "$(ROBUST_CANDIDATES)"
	@$(MAKE) --no-print-directory bench-robust-report

bench-robust-report:
	@$(WITH_ENV) Rscript bench/robust-report.R

# Day-to-day check, well under 10 minutes: every tool on P5 and P6, one CellPredX seed, then the report.
bench-quick: setup bench-cli
	@$(WITH_ENV) Rscript bench/run.R --pairs P5,P6 --seeds 0
	@$(MAKE) --no-print-directory bench-report

bench-report:
	@$(WITH_ENV) Rscript bench/report.R

bench-cli:
	@$(WITH_ENV) cargo build --release --locked -p cellpredx-cli

# Regenerates R/extendr-wrappers.R and the roxygen docs after a change to the Rust entry points.
wrappers: setup
	@Rscript -e 'writeLines(CellPredX:::extendr_wrappers_text(), "R/extendr-wrappers.R")'
	@$(MAKE) --no-print-directory document

document:
	@Rscript -e 'roxygen2::roxygenise(load_code = roxygen2::load_installed)'

clean:
	rm -rf target src/rust/target src/Makevars src/*.o src/*.so
