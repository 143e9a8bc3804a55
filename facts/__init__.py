"""Custom pyinfra facts: what the server is now."""
