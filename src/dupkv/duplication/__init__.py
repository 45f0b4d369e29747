"""Duplication: shipping a table's log to another cluster (see DESIGN.md, "Duplication semantics").

The status table (`status`) is shared by the meta server and the replica servers; the other
modules here are the replica side's pipeline.
"""
