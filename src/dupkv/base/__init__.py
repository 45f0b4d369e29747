"""Pure building blocks shared by every layer: ids, errors, time, hashing, config."""
