"""The meta server: tables, partition placement, duplications, and the store that keeps them."""
