{
  "type": "oemkit-fingerprint/v1",
  "salt": "abababababababababababababababababababababababababababababababab",
  "created": "2024-01-01T00:00:00Z",
  "components": [
    {
      "kind": "machine-id",
      "hash": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
    }
  ]
}