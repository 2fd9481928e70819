"""The front ends: commands as sessions built from explicit values (``play``, ``separate``, ``pipe``, ``live``),
the CLI that maps arguments onto them, and what they share (devices, reporting, signals). Nothing in the runtime
core imports this package."""
