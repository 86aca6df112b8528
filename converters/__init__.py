"""Deployment target profiles, one TOML file per target (shipped as package data)."""
