"""Keys, DSSE envelopes and Sigstore bundles, ASCII armor."""
