"""Replica side: partitions (write and read paths), scanners and the replica server."""
