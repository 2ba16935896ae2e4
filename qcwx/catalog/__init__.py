"""Analytes, quality specifications, instruments, reagents, QC materials and test systems."""
