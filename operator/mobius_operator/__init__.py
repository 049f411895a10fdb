"""mobius_operator: the kopf operator that reconciles ``CacheConfig`` resources onto Redis and the sidecars.

See docs/operator.md. Importing this package registers nothing: ``handlers.register()`` does, on a registry.
"""
