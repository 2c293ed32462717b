"""pytest plugin for localrunner (entry point pytest11). Being written (issue 6)."""
