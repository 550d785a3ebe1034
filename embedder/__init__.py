"""Image decoding and embedding: catalog images -> vectors."""
