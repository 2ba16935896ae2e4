"""Tests of the WeChat glue, all through real HTTP to the local fake WeChat."""
