"""Making corpora: real encodes of real sources, scored by libvmaf, as schema v3 rows."""
