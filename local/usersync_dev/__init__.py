"""Development-only tooling for usersync (local stack, token minting, event signing). Never shipped."""
