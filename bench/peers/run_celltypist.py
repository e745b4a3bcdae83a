"""CellTypist 1.7 on one benchmark pair, as its own process so that bench/run.R can measure it.

Trains a logistic-regression model on the reference and annotates the query ("best match" mode,
no majority voting: every cell gets its most probable type, as every tool is scored). Writes
<out>/predictions.tsv (the format `cellpredx evaluate` reads) and <out>/run.json. Only the
reference's metadata is read; the query's labels are never read.

Input: both sides restricted to the features they share, normalised as CellTypist expects
(counts scaled to 10,000 per cell, then log1p; P6's log-normalised values are first turned back
with expm1). Feature selection is off by default (CellTypist's default; BENCHMARKS.md: on P3
0.695 / 0.386 without it against 0.599 / 0.328 with it); --feature-selection turns it on.
Confidence = the called type's probability; open-set score (log_doubt column) = ln(1 - it).

(Not named celltypist.py: the script's own directory comes first on sys.path and would shadow
the package.)

Usage: python bench/peers/run_celltypist.py --ref DIR --query DIR [--ref-cells FILE]
           [--query-cells FILE] [--log-normalised] [--feature-selection] --out DIR
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp


def read_dataset(directory, cells_file):
    """A dataset directory as a cells x features CSR matrix, its cell names and feature names."""
    with gzip.open(os.path.join(directory, "matrix.mtx.gz")) as handle:
        matrix = sp.csr_matrix(scipy.io.mmread(handle).T)
    features = pd.read_csv(os.path.join(directory, "features.tsv"), header=None, sep="\t")[0].astype(str).to_numpy()
    cells = pd.read_csv(os.path.join(directory, "barcodes.tsv"), header=None, sep="\t")[0].astype(str).to_numpy()
    if cells_file:
        wanted = pd.read_csv(cells_file, header=None, sep="\t")[0].astype(str).to_numpy()
        index = pd.Index(cells).get_indexer(wanted)
        if (index < 0).any():
            raise SystemExit(f"{cells_file}: {int((index < 0).sum())} cells are not in {directory}")
        matrix, cells = matrix[index], wanted
    return matrix, cells, features


def log1p_per_10k(matrix, log_normalised):
    """CellTypist's expected input: log1p of counts scaled to 10,000 per cell (empty cells stay 0)."""
    matrix = matrix.astype(np.float64)
    if log_normalised:
        matrix = matrix.expm1()
    totals = np.asarray(matrix.sum(axis=1)).ravel()
    scale = np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)
    return sp.csr_matrix(sp.diags(scale) @ matrix).log1p()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--ref-cells")
    parser.add_argument("--query-cells")
    parser.add_argument("--log-normalised", action="store_true", help="inputs are log-normalised values, not counts")
    parser.add_argument("--feature-selection", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import anndata
    import celltypist

    ref, ref_cells, ref_features = read_dataset(args.ref, args.ref_cells)
    query, query_cells, query_features = read_dataset(args.query, args.query_cells)
    meta = pd.read_csv(os.path.join(args.ref, "metadata.tsv"), sep="\t", dtype=str).set_index("cell_id")
    labels = meta.loc[ref_cells, "cell_type"].to_numpy()

    started = time.time()
    shared = np.intersect1d(ref_features, query_features)
    ref = ref[:, pd.Index(ref_features).get_indexer(shared)]
    query = query[:, pd.Index(query_features).get_indexer(shared)]
    ref = log1p_per_10k(ref, args.log_normalised)
    query = anndata.AnnData(log1p_per_10k(query, args.log_normalised),
                            obs=pd.DataFrame(index=query_cells), var=pd.DataFrame(index=shared))
    # check_expression looks at one cell's total only, which an empty SNARE-seq cell fails; the
    # normalisation above is the one it checks for.
    model = celltypist.train(ref, labels=labels, genes=shared, check_expression=False,
                             feature_selection=args.feature_selection, n_jobs=1)
    result = celltypist.annotate(query, model=model, mode="best match", majority_voting=False)
    fit_predict_seconds = time.time() - started

    probability = result.probability_matrix.loc[query_cells]
    best = probability.to_numpy().argmax(axis=1)
    confidence = probability.to_numpy().max(axis=1)
    # ln(1 - p) keeps ordering cells whose p rounds to 1 (as the CLI's log_doubt does); it is
    # CellTypist's open-set score, in both columns evaluate can read.
    doubt = np.log(np.clip(1.0 - confidence, 1e-300, None))
    table = pd.DataFrame({
        "cell": query_cells,
        "label": probability.columns[best],
        "best_type": probability.columns[best],
        "confidence": confidence,
        "log_doubt": doubt,
        "novelty": doubt,
    })
    table = pd.concat([table, probability.add_prefix("p:").reset_index(drop=True)], axis=1)
    os.makedirs(args.out, exist_ok=True)
    table.to_csv(os.path.join(args.out, "predictions.tsv"), sep="\t", index=False)
    variant = "feature_selection" if args.feature_selection else "all_features"
    with open(os.path.join(args.out, "run.json"), "w") as handle:
        json.dump({"tool": "celltypist", "variant": variant, "version": celltypist.__version__,
                   "fit_predict_seconds": fit_predict_seconds}, handle)
    print(f"celltypist {variant}: {fit_predict_seconds:.1f} s")


if __name__ == "__main__":
    main()
