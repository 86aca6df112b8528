"""Training recipes, one TOML file per registered model variant (shipped as package data)."""
