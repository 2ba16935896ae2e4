"""Mutual recognition (检验结果互认): the region's §7 thresholds, the list and its overrides."""
