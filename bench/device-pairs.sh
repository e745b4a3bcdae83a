#!/bin/bash
# The CellPredX CLI on the SNARE-seq pairs P1-P3 on a machine without R (a GPU machine): the same
# runs as bench/pairs.R, with the cell lists made by awk and the rows by python3.
# Usage: bench/device-pairs.sh CLI DATA_DIR OUT_TSV DEVICE "SEEDS" "PAIRS" [extra transfer args...]
#   e.g. bench/device-pairs.sh target/release/cellpredx ../shared/data results.tsv cuda "0 1 2" "P1 P3"
set -euo pipefail
cli=$1 data=$2 out=$3 device=$4 seeds=$5 pairs=$6
shift 6
snare=$data/snareseq_mouse_cortex
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# metadata.tsv columns: cell_id, cell_type, cell_type_fine, batch, barcode
early='$4 ~ /^09[A-F]$/'
awk -F'\t' 'NR > 1 && $2 != "Mis" { print $1 }' "$snare/rna/metadata.tsv" >"$work/all.txt"
awk -F'\t' "NR > 1 && \$2 != \"Mis\" && $early { print \$1 }" "$snare/rna/metadata.tsv" >"$work/early.txt"
awk -F'\t' "NR > 1 && \$2 != \"Mis\" && !($early) { print \$1 }" "$snare/rna/metadata.tsv" >"$work/late.txt"

[ -f "$out" ] || printf 'date\tpair\ttool\tvariant\tseed\taccuracy\tmacro_f1\tauroc\toscr\tseconds\tfit_seconds\tpeak_rss_mb\tsteps\tdevice\tthreads\tcd8_recall\tnote\n' >"$out"
for pair in $pairs; do
  case $pair in
    P1) args=(--scenario rna_atac_matched --ref "$snare/rna" --query "$snare/atac_gene_activity" --ref-cells "$work/all.txt" --query-cells "$work/all.txt") ;;
    P2) args=(--scenario rna_atac_unmatched --ref "$snare/rna" --query "$snare/atac_gene_activity" --ref-cells "$work/early.txt" --query-cells "$work/late.txt") ;;
    P3) args=(--scenario atac_atac --ref "$snare/atac_peaks" --query "$snare/atac_peaks" --ref-cells "$work/early.txt" --query-cells "$work/late.txt") ;;
    *) echo "unknown pair $pair (this script runs P1-P3)" >&2; exit 2 ;;
  esac
  for seed in $seeds; do
    run=$work/$pair-$seed
    start=$(date +%s.%N)
    "$cli" transfer "${args[@]}" --device "$device" --seed "$seed" --out "$run" --quiet "$@"
    end=$(date +%s.%N)
    "$cli" evaluate --pred "$run/predictions.tsv" --truth "$snare/atac_gene_activity" --json >"$run/eval.json"
    python3 - "$run" "$pair" "$seed" "$start" "$end" "$out" <<'EOF'
import json, sys, time
run, pair, seed, start, end, out = sys.argv[1:]
r = json.load(open(f"{run}/run.json"))
e = json.load(open(f"{run}/eval.json"))
f = lambda x, d=4: "NA" if x is None else f"{x:.{d}f}"
row = [time.strftime("%Y-%m-%d %H:%M", time.gmtime()), pair, "cellpredx-cli", "full", seed, f(e["accuracy"]), f(e["macro_f1"]),
       f(e["auroc"]), f(e["oscr"]), f(float(end) - float(start), 1), f(r["fit_predict_seconds"], 1),
       f(r["peak_rss_mb"], 0), str(r["steps"]), r["device"], str(r["threads"]), "NA", "device-pairs.sh"]
open(out, "a").write("\t".join(row) + "\n")
print(f"{pair} seed {seed} {r['device']}: accuracy {f(e['accuracy'], 3)} macro-F1 {f(e['macro_f1'], 3)} | "
      f"{float(end) - float(start):.1f} s (fit {r['fit_predict_seconds']:.1f} s), {r['peak_rss_mb']:.0f} MB, {r['steps']} steps")
EOF
  done
done
