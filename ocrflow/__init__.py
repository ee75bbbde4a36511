"""ocrflow: validated structured data out of scans, photos and PDFs."""

__version__ = "0.1.0"
