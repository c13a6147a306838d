"""One module per on-disk release format; each registers its loader in ``DATASETS``."""
