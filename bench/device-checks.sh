#!/bin/bash
# GPU checks on a machine without R (the lent GPU machine; bench/NOTES.md has the figures):
#   1. P1, P4, P6 with the CLI on CUDA, scored by `cellpredx evaluate` (the open-set score on CUDA);
#   2. Integrated Gradients over all P1 query cells, batched and one cell per pass, through the
#      embedding and through the inputs, on CUDA and on the CPU of the same machine.
# Usage: bench/device-checks.sh CLI DATA_DIR OUT_DIR   (GPU=cpu runs the same on a machine without one)
# Rows go to OUT_DIR/device-checks.tsv, logs to OUT_DIR/device-checks.log.
set -euo pipefail
cli=$1 data=$2 out=$3 gpu=${GPU:-cuda}
mkdir -p "$out"
tsv=$out/device-checks.tsv log=$out/device-checks.log
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exec > >(tee -a "$log") 2>&1
"$cli" info
snare=$data/snareseq_mouse_cortex
awk -F'\t' 'NR > 1 && $2 != "Mis" { print $1 }' "$snare/rna/metadata.tsv" >"$work/p1-cells.txt"
printf 'check\tpair\tdevice\tvariant\taccuracy\tmacro_f1\tauroc\toscr\tseconds\tcompleteness_gap\n' >"$tsv"
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d.get(sys.argv[2]) if d.get(sys.argv[2]) is not None else 'NA')" "$@"; }

transfer() { # pair, truth dir, transfer args...
  local pair=$1 truth=$2; shift 2
  local run=$work/$pair
  "$cli" transfer "$@" --device "$gpu" --seed 0 --out "$run" --save-model "$run/model" --quiet
  "$cli" evaluate --pred "$run/predictions.tsv" --truth "$truth" --json >"$run/eval.json"
  printf 'transfer\t%s\t%s\tseed0\t%s\t%s\t%s\t%s\t%s\tNA\n' "$pair" "$gpu" "$(json "$run/eval.json" accuracy)" "$(json "$run/eval.json" macro_f1)" \
    "$(json "$run/eval.json" auroc)" "$(json "$run/eval.json" oscr)" "$(json "$run/run.json" fit_predict_seconds)" | tee -a "$tsv"
}
transfer P1 "$snare/atac_gene_activity" --scenario rna_atac_matched --ref "$snare/rna" --query "$snare/atac_gene_activity" \
  --ref-cells "$work/p1-cells.txt" --query-cells "$work/p1-cells.txt"
transfer P4 "$data/cite_asap_adt/asapseq" --scenario rna_rna --ref "$data/cite_asap_adt/citeseq" --query "$data/cite_asap_adt/asapseq"
transfer P6 "$data/scclassify_pancreas_xin_wang/wang" --scenario rna_rna --ref "$data/scclassify_pancreas_xin_wang/xin" \
  --query "$data/scclassify_pancreas_xin_wang/wang"

for device in $(printf "%s\n" "$gpu" cpu | sort -u); do
  for path in embedding input; do
    for pass in batched one; do
      extra=(); [ "$pass" = one ] && extra=(--cells-per-pass 1)
      ig=$work/ig-$device-$path-$pass
      "$cli" interpret --model "$work/P1/model" --query "$snare/atac_gene_activity" --query-cells "$work/p1-cells.txt" \
        --out "$ig" --device "$device" --path-space "$path" --quiet "${extra[@]}"
      printf 'interpret\tP1\t%s\t%s-%s\tNA\tNA\tNA\tNA\t%s\t%s\n' "$device" "$path" "$pass" \
        "$(json "$ig/interpret.json" ig_seconds)" "$(json "$ig/interpret.json" completeness_relative_gap)" | tee -a "$tsv"
    done
  done
done
