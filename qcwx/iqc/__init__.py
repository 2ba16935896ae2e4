"""Internal QC: runs, versioned results, control limits, rule sets, violations, actions."""
