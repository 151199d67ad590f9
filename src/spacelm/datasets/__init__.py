"""Datasets for spacelm: the embedded procedural rooms (``synthetic``) and loaders for public data."""
