"""The verification core: bundles, trust-root chains, licenses and CRLs, SBOMs."""
