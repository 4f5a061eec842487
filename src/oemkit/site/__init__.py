"""The site's engines: where a disconnected site runs more than one host, oemkit plugs into
the engine it already has instead of imitating it.

- :mod:`oemkit.site.oci`: ``oemkit oci push/pull/export/import``, a bundle as an OCI
  artifact in the site's registry or an OCI image layout (:mod:`oemkit.site._registry`: the
  distribution client, streaming and resuming).
"""
