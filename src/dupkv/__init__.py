"""dupkv: a Pegasus-compatible key-value store with cross-datacenter duplication."""

__version__ = "0.1.0"
