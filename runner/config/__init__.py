"""Configuration: the config file's TOML read into frozen values, checked at load."""
