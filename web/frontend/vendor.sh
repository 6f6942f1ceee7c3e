#!/bin/sh
# Copies the third-party files the browser view and the HTML report use (built, minified, with
# their licences) from node_modules into the Python package, so nothing is fetched at run time.
# Run after `npm ci` (or after changing a version in package.json and `npm install`).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
static="$here/../../src/ulma/web/static"
mkdir -p "$static"
cp "$here/node_modules/d3/dist/d3.min.js" "$static/d3.min.js"
cp "$here/node_modules/d3/LICENSE" "$static/d3.LICENSE"
echo "copied d3 $(node -p "require('$here/node_modules/d3/package.json').version") into $static"
