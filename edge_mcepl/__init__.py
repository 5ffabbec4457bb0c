"""edge-mcepl: MCE-PL personalized mask learning over fixed seeded weights."""

__version__ = "0.1.0"
