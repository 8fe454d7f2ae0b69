"""Step 5, mirror rewrite: point every network access of a build at a mirror profile."""
