"""mobius-cache: the Redis cache layer of the Mobius platform."""
