"""dralign: distributionally robust preference alignment."""
__version__ = "0.1.0"
