"""User tokens: the gateway client, each environment's minter, the token cache, system tokens."""
