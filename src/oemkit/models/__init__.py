"""The document types and pure logic over them: manifest, trust root, license and CRL,
migrations, config versions, reports.

Every parser here (``parse_*``, ``from_dict``, the loaders) raises
:class:`oemkit.errors.FormatError` for a document that does not parse or fails its schema
(exit 3 as it is; a trust key's E_KEY_FORMAT and a time's E_TIME stay the key loader's and
the time parser's InputError); a verifier, for whom the document is evidence, restates it as a
VerificationError with :func:`oemkit.errors.restate`."""
