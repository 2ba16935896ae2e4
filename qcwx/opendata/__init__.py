"""Standardised open data (推动AI医学大数据的标准化): the region's QC results, coded and shared.

``columns`` (the data set's columns and dictionary) · ``dataset`` (de-identified rows in
chunks) · ``fhir`` (R4 resources) · ``writers`` (CSV + dictionary + bundles in one zip) ·
``code_gaps`` (exception-report items about LOINC/UCUM) · ``admin`` (code tables).
"""
