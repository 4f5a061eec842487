"""The site's engines: where a disconnected site runs more than one host, oemkit plugs into
the engine it already has instead of imitating it.

- :mod:`oemkit.site.kubernetes`: ``oemkit deploy kubernetes``, a Kustomize base (Deployment,
  Service, PodDisruptionBudget, HorizontalPodAutoscaler, NetworkPolicy, the trust root as a
  ConfigMap, the license as a Secret) for a verified bundle, sized from ``sizing.json``.
- :mod:`oemkit.site.image`: ``oemkit image``, the container image that serves a bundle, as
  a deterministic OCI image layout (the site's Python base image plus oemkit, its
  dependencies and the bundle as layers; the SBOM attached as a referrer).
- :mod:`oemkit.site.oci`: ``oemkit oci push/pull/export/import``, a bundle as an OCI
  artifact in the site's registry or an OCI image layout (:mod:`oemkit.site._registry`: the
  distribution client, streaming and resuming).
"""
