"""Packaged YAML configs of the toy experiments (`anode experiment --list`)."""
