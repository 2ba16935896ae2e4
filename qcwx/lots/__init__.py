"""Unified QC lots (统一批号质控品): the centre's distributed lots and each lab's change-over."""
