"""Storage: Pegasus's byte layouts, the RocksDB engine and the private mutation log (plog)."""
