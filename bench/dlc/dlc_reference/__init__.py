"""The DLC serving stack's handler service, answering through one of our families' handler functions."""
