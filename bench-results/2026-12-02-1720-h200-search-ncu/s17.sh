#!/usr/bin/env bash
cd "$(dirname "$0")"
for r in 32k 128k; do
  ncu --import search-$r.ncu-rep --page details --print-details all > $OUT/details-$r.txt 2>&1; echo "== details $r rc=$?"
  ncu --import search-$r.ncu-rep --page source --print-source sass --csv > $OUT/source-$r.csv 2>&1; echo "== source $r rc=$? $(wc -l < $OUT/source-$r.csv) lines"
done
grep -A40 "Instruction Statistics" $OUT/details-128k.txt | head -60
