"""Task modules; each task is a thin wrapper over one service call."""
