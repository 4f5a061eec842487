#!/usr/bin/env bash
# Build the oemkit.airgap collection tarball offline (no Galaxy server is contacted):
#   ansible/build.sh [OUTDIR]      -> OUTDIR/oemkit-airgap-VERSION.tar.gz (default: dist/)
# Install it on the controller with
#   ansible-galaxy collection install OUTDIR/oemkit-airgap-VERSION.tar.gz -p COLLECTIONS_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../dist}"
mkdir -p "$out"
ansible-galaxy collection build "$here/oemkit/airgap" --output-path "$out" --force
