"""The release side: everything a vendor produces (bundles, signatures, keys, trust roots,
licenses and CRLs, attestations, the scaffold, SBOM, provenance, model card, packages)."""
