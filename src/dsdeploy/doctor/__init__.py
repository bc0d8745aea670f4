"""`dsdeploy doctor`: every deployment pitfall we know of, checked, with the exact fix.

Each check module holds small functions that take what they inspect (settings groups,
folders, CPU answers, library paths) and return ``Finding`` values, so a test can hand a
check a prepared breakage and the command hands it this machine. ``checks.py`` lists them.
"""
