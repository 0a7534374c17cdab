"""The numpy reference interpreters: the oracle every later stage is checked against."""
