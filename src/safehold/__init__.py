"""safehold: a personal data cloud that cannot lose its users' data."""

__version__ = "0.1.0"
