"""Reading catalogs and running ingests: catalog -> images -> embedder -> store."""
