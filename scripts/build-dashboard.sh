#!/usr/bin/env bash
# Assembles the dashboard's static files into build/assets/dashboard/ (the Worker's `[assets]`
# directory is build/assets): the page, its script and styles from dashboard/, and under vendor/
# the chart library, uPlot, copied from node_modules (installed from the npm registry by
# package-lock.json) with its licence. Nothing is fetched from anywhere else, and the page
# loads nothing from any other origin.
#   build-dashboard.sh
set -euo pipefail
source "$(dirname "$0")/env.sh"
src="$ROOT/dashboard"
out="$ROOT/build/assets/dashboard"
uplot="$ROOT/node_modules/uplot"
for f in "$uplot/dist/uPlot.esm.js" "$uplot/dist/uPlot.min.css" "$uplot/LICENSE"; do
  [ -f "$f" ] || { echo "build-dashboard: $f is missing: run scripts/setup.sh (npm ci)" >&2; exit 1; }
done
rm -rf "$out"
mkdir -p "$out/vendor"
cp -R "$src/." "$out/"
cp "$uplot/dist/uPlot.esm.js" "$uplot/dist/uPlot.min.css" "$out/vendor/"
cp "$uplot/LICENSE" "$out/vendor/uPlot.LICENSE.txt"
version="$(node -p "require('$uplot/package.json').version")"
echo "build-dashboard: $(find "$out" -type f | wc -l) files in ${out#"$ROOT"/} (uPlot $version)"
