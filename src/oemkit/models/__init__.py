"""The document types and pure logic over them: manifest, trust root, license and CRL,
migrations, config versions, reports."""
